"""Login, tokens and OAuth through wechatpy's OA/mini-program clients (an independent implementation)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException, WeChatOAuthException
from wechatpy.oauth import WeChatOAuth

from tests.wechat.sandbox.conftest import Env


def test_jscode2session_single_use_and_expiry(env: Env) -> None:
    mp = env.post("/apps", {"kind": "miniprogram"})
    user = env.user(nickname="小程序用户")
    client = WeChatClient(mp["appid"], mp["secret"])
    code = env.post(f"/users/{user['id']}/login-code", {"appid": mp["appid"]})["code"]
    session = client.wxa.code_to_session(code)
    assert session["openid"] == user["openids"][mp["appid"]]
    assert session["unionid"] == user["unionid"]
    assert len(session["session_key"]) == 24
    with pytest.raises(WeChatClientException) as exc:
        client.wxa.code_to_session(code)
    assert exc.value.errcode == 40163
    late = env.post(f"/users/{user['id']}/login-code", {"appid": mp["appid"]})["code"]
    env.advance(301)
    with pytest.raises(WeChatClientException) as exc:
        client.wxa.code_to_session(late)
    assert exc.value.errcode == 40029


def test_wrong_secret_and_fault(env: Env) -> None:
    mp = env.post("/apps", {"kind": "miniprogram"})
    resp = requests.get(
        "https://api.weixin.qq.com/cgi-bin/token",
        params={"grant_type": "client_credential", "appid": mp["appid"], "secret": "nope"},
        timeout=5,
    )
    assert resp.json()["errcode"] == 40125
    env.post(
        "/faults", {"api": "mp.jscode2session", "mode": "error", "code": "45011", "message": "minute quota"}
    )
    user = env.user()
    code = env.post(f"/users/{user['id']}/login-code", {"appid": mp["appid"]})["code"]
    q = {"appid": mp["appid"], "secret": mp["secret"], "js_code": code, "grant_type": "authorization_code"}
    assert (
        requests.get("https://api.weixin.qq.com/sns/jscode2session", params=q, timeout=5).json()["errcode"]
        == 45011
    )
    assert (
        "openid" in requests.get("https://api.weixin.qq.com/sns/jscode2session", params=q, timeout=5).json()
    )


def test_tokens_overlap_and_stable_token(env: Env) -> None:
    oa = env.official()
    q = {"grant_type": "client_credential", "appid": oa["appid"], "secret": oa["secret"]}
    first = requests.get("https://api.weixin.qq.com/cgi-bin/token", params=q, timeout=5).json()[
        "access_token"
    ]
    second = requests.get("https://api.weixin.qq.com/cgi-bin/token", params=q, timeout=5).json()[
        "access_token"
    ]
    assert first != second

    def ticket(token: str) -> dict[str, object]:
        return dict(
            requests.get(
                "https://api.weixin.qq.com/cgi-bin/ticket/getticket",
                params={"access_token": token, "type": "wx_card"},
                timeout=5,
            ).json()
        )

    assert ticket(first)["errcode"] == 0  # the old token survives the 5-minute overlap
    env.advance(301)
    assert ticket(first)["errcode"] == 42001
    assert ticket(second)["errcode"] == 0
    assert ticket("bogus")["errcode"] == 40001
    body = {"grant_type": "client_credential", "appid": oa["appid"], "secret": oa["secret"]}
    s1 = requests.post("https://api.weixin.qq.com/cgi-bin/stable_token", json=body, timeout=5).json()
    s2 = requests.post("https://api.weixin.qq.com/cgi-bin/stable_token", json=body, timeout=5).json()
    s3 = requests.post(
        "https://api.weixin.qq.com/cgi-bin/stable_token", json={**body, "force_refresh": True}, timeout=5
    ).json()
    assert s1["access_token"] == s2["access_token"] != s3["access_token"]


def test_oauth_authorize_redirect_exchange_userinfo(env: Env) -> None:
    oa = env.official()
    user = env.user(nickname="网页用户")
    oauth = WeChatOAuth(
        oa["appid"], oa["secret"], "https://shop.example.test/cb", scope="snsapi_userinfo", state="xyz123"
    )
    resp = requests.get(oauth.authorize_url, allow_redirects=False, timeout=5)
    assert resp.status_code == 302
    location = urlsplit(resp.headers["Location"])
    query = parse_qs(location.query)
    assert location.netloc == "shop.example.test"
    assert query["state"] == ["xyz123"]
    token = oauth.fetch_access_token(query["code"][0])
    assert token["openid"] == user["openids"][oa["appid"]]
    info = oauth.get_user_info()
    assert info["nickname"] == "网页用户"
    assert info["unionid"] == user["unionid"]
    with pytest.raises(WeChatOAuthException) as exc:
        oauth.fetch_access_token(query["code"][0])
    assert exc.value.errcode == 40163
    refreshed = oauth.refresh_access_token(token["refresh_token"])
    assert refreshed["access_token"] == token["access_token"]


def test_oauth_base_scope_cannot_read_userinfo(env: Env) -> None:
    oa = env.official()
    user = env.user()
    code = env.post(f"/users/{user['id']}/oauth-code", {"appid": oa["appid"], "scope": "snsapi_base"})["code"]
    oauth = WeChatOAuth(oa["appid"], oa["secret"], "https://shop.example.test/cb")
    oauth.fetch_access_token(code)
    with pytest.raises(WeChatOAuthException) as exc:
        oauth.get_user_info()
    assert exc.value.errcode == 48001


def test_authorize_deny_and_chooser_page(env: Env) -> None:
    oa = env.official()
    env.user(nickname="甲")
    env.user(nickname="乙")
    base = {
        "appid": oa["appid"],
        "redirect_uri": "https://shop.example.test/cb",
        "response_type": "code",
        "scope": "snsapi_base",
        "state": "s1",
    }
    page = requests.get("https://open.weixin.qq.com/connect/oauth2/authorize", params=base, timeout=5)
    assert page.status_code == 200
    assert "sandbox_user=" in page.text
    deny = requests.get(
        "https://open.weixin.qq.com/connect/oauth2/authorize",
        params={**base, "action": "deny"},
        allow_redirects=False,
        timeout=5,
    )
    assert deny.headers["Location"] == "https://shop.example.test/cb?state=s1"


def test_encrypted_data_decrypts_with_session_key(env: Env) -> None:
    from wechatpy.crypto import WeChatWxaCrypto

    mp = env.post("/apps", {"kind": "miniprogram"})
    user = env.user()
    client = WeChatClient(mp["appid"], mp["secret"])
    code = env.post(f"/users/{user['id']}/login-code", {"appid": mp["appid"]})["code"]
    session = client.wxa.code_to_session(code)
    sealed = env.post(
        f"/users/{user['id']}/encrypted-data", {"appid": mp["appid"], "data": {"stepInfoList": []}}
    )
    assert sealed["session_key"] == session["session_key"]
    plain = WeChatWxaCrypto(session["session_key"], sealed["iv"], mp["appid"]).decrypt_message(
        sealed["encryptedData"]
    )
    assert plain["stepInfoList"] == []
    assert plain["watermark"]["appid"] == mp["appid"]
