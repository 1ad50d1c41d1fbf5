"""Mini-program login/tokens, OA OAuth/tickets, safe-mode message crypto, events and card APIs."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
import wechat_vectors as v
from responses import matchers

from wechat.cards import CardClient, card_ext
from wechat.endpoints import WeChatEndpoints
from wechat.errors import VerificationError, WeChatError, XMLSecurityError
from wechat.gateway_log import GatewayEvent, mask_openid, redact
from wechat.miniprogram import MiniProgramClient, decrypt_user_data
from wechat.oa_messages import MessageCrypto, check_server_signature, parse_event
from wechat.official import OfficialAccountClient

API = "https://api.test"
TOKEN, AES_KEY, APPID = "123456", "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR", "wx49f0ab532d5d035a"


@pytest.fixture
def mini(endpoints: WeChatEndpoints) -> MiniProgramClient:
    return MiniProgramClient("wxmini", "s3cret", endpoints)


@pytest.fixture
def oa(endpoints: WeChatEndpoints) -> OfficialAccountClient:
    return OfficialAccountClient("wxoa", "s3cret", endpoints)


# --- mini-program ------------------------------------------------------------------------------------


def test_code_to_session_uses_api_base(mocked: responses.RequestsMock, mini: MiniProgramClient) -> None:
    mocked.add(
        "GET",
        f"{API}/sns/jscode2session",
        json={
            "openid": "o16wA0b4AZKzgVJR3MBwoUdTfU_E",
            "session_key": "D1ZWEygStjuLCnZ9IN2l4Q==",
            "expires_in": 7200,
        },
        match=[
            matchers.query_param_matcher(
                {"appid": "wxmini", "secret": "s3cret", "js_code": "CODE", "grant_type": "authorization_code"}
            )
        ],
    )
    events: list[GatewayEvent] = []
    mini.http.hook = events.append
    login = mini.code_to_session("CODE")
    assert (login.openid, login.session_key, login.unionid) == (
        "o16wA0b4AZKzgVJR3MBwoUdTfU_E",
        "D1ZWEygStjuLCnZ9IN2l4Q==",
        None,
    )
    assert "D1ZWEygStjuLCnZ9IN2l4Q==" not in repr(login)
    assert "D1ZWEygStjuLCnZ9IN2l4Q==" not in events[0].body and "s3cret" not in events[0].body


@pytest.mark.parametrize(
    ("errcode", "retryable", "ambiguous"),
    [
        (40029, False, False),
        (40163, False, False),
        (45011, True, False),
        (-1, True, False),
        (12345, False, True),
    ],
)
def test_login_errcodes_keep_their_code(
    mocked: responses.RequestsMock, mini: MiniProgramClient, errcode: int, retryable: bool, ambiguous: bool
) -> None:
    mocked.add("GET", f"{API}/sns/jscode2session", json={"errcode": errcode, "errmsg": "msg"})
    with pytest.raises(WeChatError) as excinfo:
        mini.code_to_session("CODE")
    err = excinfo.value
    assert (err.code, err.retryable, err.ambiguous, err.message) == (
        str(errcode),
        retryable,
        ambiguous,
        "msg",
    )


def test_garbage_and_timeouts_are_ambiguous(mocked: responses.RequestsMock, mini: MiniProgramClient) -> None:
    mocked.add("GET", f"{API}/sns/jscode2session", body=b"<html>")
    with pytest.raises(WeChatError) as excinfo:
        mini.code_to_session("CODE")
    assert excinfo.value.ambiguous and excinfo.value.code == "UNPARSABLE"
    mocked.replace("GET", f"{API}/sns/jscode2session", body=requests.ReadTimeout())
    with pytest.raises(WeChatError) as excinfo:
        mini.code_to_session("CODE")
    assert excinfo.value.ambiguous and excinfo.value.code == "TIMEOUT"


def test_access_tokens(mocked: responses.RequestsMock, mini: MiniProgramClient) -> None:
    mocked.add("GET", f"{API}/cgi-bin/token", json={"access_token": "AT", "expires_in": 7200})
    mocked.add(
        "POST",
        f"{API}/cgi-bin/stable_token",
        json={"access_token": "ST", "expires_in": 7000},
        match=[
            matchers.json_params_matcher(
                {
                    "grant_type": "client_credential",
                    "appid": "wxmini",
                    "secret": "s3cret",
                    "force_refresh": False,
                }
            )
        ],
    )
    assert mini.fetch_access_token().token == "AT"
    stable = mini.fetch_access_token(stable=True)
    assert (stable.token, stable.expires_in) == ("ST", 7000)
    assert "ST" not in repr(stable)


def test_decrypt_user_data_official_demo_vector_1() -> None:
    data = decrypt_user_data(
        "tiihtNczf5v6AKRyjwEUhQ==", v.WXA_ENCRYPTED_DATA, "r7BXXKkLb8qrSNn05n0qiA==", "wx4f4bc4dec97d474b"
    )
    assert data == json.loads(v.WXA_PLAINTEXT)
    assert data["watermark"] == {"timestamp": 1477314187, "appid": "wx4f4bc4dec97d474b"}


def test_decrypt_user_data_rejects_other_appid_and_bad_key() -> None:
    with pytest.raises(VerificationError) as excinfo:
        decrypt_user_data(
            "tiihtNczf5v6AKRyjwEUhQ==", v.WXA_ENCRYPTED_DATA, "r7BXXKkLb8qrSNn05n0qiA==", "wxother"
        )
    assert excinfo.value.code == "WATERMARK"
    with pytest.raises(VerificationError) as excinfo:
        decrypt_user_data(
            "AAAAAAAAAAAAAAAAAAAAAA==", v.WXA_ENCRYPTED_DATA, "r7BXXKkLb8qrSNn05n0qiA==", "wx4f4bc4dec97d474b"
        )
    assert excinfo.value.code == "DECRYPT_FAILED"


# --- official account OAuth / tickets ----------------------------------------------------------------


def test_authorize_url_order_and_fragment(oa: OfficialAccountClient) -> None:
    url = oa.authorize_url("https://hongli.test/cb?x=1", scope="snsapi_userinfo", state="abc123")
    assert url == (
        "https://open.test/connect/oauth2/authorize?appid=wxoa&redirect_uri=https%3A%2F%2Fhongli.test%2Fcb%3Fx%3D1"
        "&response_type=code&scope=snsapi_userinfo&state=abc123#wechat_redirect"
    )
    assert parse_qs(urlsplit(url).query)["redirect_uri"] == ["https://hongli.test/cb?x=1"]
    with pytest.raises(ValueError):
        oa.authorize_url("https://hongli.test/cb", state="not allowed!")


def test_oauth_exchange_refresh_userinfo(mocked: responses.RequestsMock, oa: OfficialAccountClient) -> None:
    token = {
        "access_token": "UAT",
        "expires_in": 7200,
        "refresh_token": "RT",
        "openid": "o-user",
        "scope": "snsapi_userinfo",
        "is_snapshotuser": 1,
        "unionid": "u1",
    }
    mocked.add("GET", f"{API}/sns/oauth2/access_token", json=token)
    mocked.add("GET", f"{API}/sns/oauth2/refresh_token", json=dict(token, access_token="UAT2"))
    mocked.add("GET", f"{API}/sns/userinfo", json={"openid": "o-user", "nickname": "n"})
    got = oa.exchange_code("CODE")
    assert (got.openid, got.unionid, got.is_snapshotuser, got.scope) == (
        "o-user",
        "u1",
        True,
        "snsapi_userinfo",
    )
    assert oa.refresh_oauth_token("RT").access_token == "UAT2"
    assert oa.userinfo("UAT2", "o-user")["nickname"] == "n"
    mocked.replace(
        "GET", f"{API}/sns/oauth2/access_token", json={"errcode": 40163, "errmsg": "code been used"}
    )
    with pytest.raises(WeChatError) as excinfo:
        oa.exchange_code("CODE")
    assert excinfo.value.code == "40163" and excinfo.value.final


def test_tickets(mocked: responses.RequestsMock, oa: OfficialAccountClient) -> None:
    mocked.add(
        "GET",
        f"{API}/cgi-bin/ticket/getticket",
        json={"errcode": 0, "errmsg": "ok", "ticket": "T", "expires_in": 7200},
        match=[matchers.query_param_matcher({"access_token": "AT", "type": "wx_card"})],
    )
    assert oa.get_ticket("AT", "wx_card").ticket == "T"


# --- server URL, safe mode, events -------------------------------------------------------------------


def test_plain_server_signature_vector_3() -> None:
    assert check_server_signature("test", "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff", "1410685589", "test")
    assert not check_server_signature(
        "test", "f21891de399b4e33a1a93c9a7b8a8fffb5a443fe", "1410685589", "test"
    )


def test_safe_mode_vectors_4() -> None:
    crypto = MessageCrypto(TOKEN, AES_KEY, APPID)
    echo = crypto.decrypt_echostr(
        "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96", "1411443780", "437374425", v.ECHOSTR_4A
    )
    assert echo == "5927782489442352469"
    body = (
        f"<xml><ToUserName><![CDATA[{APPID}]]></ToUserName>"
        f"<Encrypt><![CDATA[{v.SAFE_MODE_ENCRYPT_4B}]]></Encrypt></xml>"
    )
    plain = crypto.decrypt_message(
        body.encode(), "74d92dfeb87ba7c714f89d98870ae5eb62dff26d", "1411525903", "461056294"
    )
    assert plain == v.SAFE_MODE_PLAIN_4B
    assert crypto.encrypt(v.SAFE_MODE_REPLY_4C, random_prefix=b"1234567890123456") == v.SAFE_MODE_ENCRYPT_4C
    with pytest.raises(VerificationError):
        crypto.decrypt_message(body.encode(), "0" * 40, "1411525903", "461056294")
    with pytest.raises(VerificationError) as excinfo:
        MessageCrypto(TOKEN, AES_KEY, "wxother").decrypt_message(
            body.encode(), "74d92dfeb87ba7c714f89d98870ae5eb62dff26d", "1411525903", "461056294"
        )
    assert excinfo.value.code == "APPID_MISMATCH"


def test_safe_mode_reply_round_trip_and_signature_vector_4c() -> None:
    crypto = MessageCrypto(TOKEN, AES_KEY, APPID)
    reply = crypto.encrypt_reply(
        b"<xml><Content>hi</Content></xml>", nonce="461056294", timestamp="1411525903"
    )
    from wechat.xml import parse_xml

    fields = parse_xml(reply)
    plain = crypto.decrypt_message(
        reply.encode(), fields["MsgSignature"], fields["TimeStamp"], fields["Nonce"]
    )
    assert plain == b"<xml><Content>hi</Content></xml>"
    from wechat.crypto import sha1_sorted_signature

    assert (
        sha1_sorted_signature([TOKEN, "1411525903", "461056294", v.SAFE_MODE_ENCRYPT_4C])
        == "407518b7649e86ef23978113f92d27afa9296533"
    )


def test_parse_card_events() -> None:
    consumed = parse_event(
        b"<xml><ToUserName><![CDATA[gh_oa]]></ToUserName><FromUserName><![CDATA[o-user]]></FromUserName>"
        b"<CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        b"<Event><![CDATA[user_consume_card]]></Event><CardId><![CDATA[pCARD]]></CardId>"
        b"<UserCardCode><![CDATA[12312312]]></UserCardCode><ConsumeSource><![CDATA[FROM_API]]></ConsumeSource></xml>"
    )
    assert (consumed.event, consumed.card_id, consumed.user_card_code, consumed.create_time) == (
        "user_consume_card",
        "pCARD",
        "12312312",
        1700000000,
    )
    assert consumed.fields["ConsumeSource"] == "FROM_API"
    assert consumed.dedupe_key == "o-user:1700000000"
    subscribe = parse_event(
        b"<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>"
        b"<MsgType>event</MsgType><Event>subscribe</Event></xml>"
    )
    assert subscribe.event == "subscribe" and subscribe.card_id is None
    with pytest.raises(XMLSecurityError):
        parse_event(b'<!DOCTYPE x [<!ENTITY a "b">]><xml><CreateTime>&a;</CreateTime></xml>')


# --- cards ------------------------------------------------------------------------------------------


def test_card_calls(mocked: responses.RequestsMock, endpoints: WeChatEndpoints) -> None:
    cards = CardClient(endpoints)
    token = matchers.query_param_matcher({"access_token": "AT"})
    mocked.add("POST", f"{API}/card/create", json={"errcode": 0, "card_id": "pCARD"}, match=[token])
    mocked.add("POST", f"{API}/card/code/deposit", json={"errcode": 0, "succ_code": ["c1"]}, match=[token])
    mocked.add(
        "POST",
        f"{API}/card/code/get",
        json={"errcode": 0, "openid": "o", "user_card_status": "NORMAL", "can_consume": True},
        match=[
            token,
            matchers.json_params_matcher({"code": "c1", "card_id": "pCARD", "check_consume": True}),
        ],
    )
    mocked.add(
        "POST", f"{API}/card/code/consume", json={"errcode": 40099, "errmsg": "code consumed"}, match=[token]
    )
    assert cards.create_card("AT", {"card_type": "CASH"}) == "pCARD"
    assert json.loads(mocked.calls[0].request.body or b"") == {"card": {"card_type": "CASH"}}
    assert cards.deposit_codes("AT", "pCARD", ["c1"])["succ_code"] == ["c1"]
    assert cards.get_code("AT", "c1", card_id="pCARD")["user_card_status"] == "NORMAL"
    with pytest.raises(WeChatError) as excinfo:
        cards.consume_code("AT", "c1", card_id="pCARD")
    assert excinfo.value.code == "40099" and excinfo.value.final


def test_card_ext_vector_6() -> None:
    ext = json.loads(
        card_ext(
            api_ticket="sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg",
            card_id="random_card_id",
            code="random_code",
            openid="random_openid",
            timestamp="1414587457",
            nonce_str="Wm3WZYTPz0wzccnW",
        )
    )
    assert ext == {
        "timestamp": "1414587457",
        "nonce_str": "Wm3WZYTPz0wzccnW",
        "code": "random_code",
        "openid": "random_openid",
        "signature": "950dc1842852457ea573d4d6af34879c1ec093c8",
    }


# --- gateway log redaction / endpoints ----------------------------------------------------------------


def test_redaction_drops_secrets_and_masks_openids() -> None:
    data = {
        "sign": "X",
        "session_key": "K",
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "items": [{"access_token": "T", "amount": 5}],
    }
    assert redact(data) == {
        "sign": "[redacted]",
        "session_key": "[redacted]",
        "payer": {"openid": "oUpF***eS6o"},
        "items": [{"access_token": "[redacted]", "amount": 5}],
    }
    assert mask_openid("short") == "***"


def test_failing_hook_does_not_break_the_call(
    mocked: responses.RequestsMock, mini: MiniProgramClient
) -> None:
    def broken(event: GatewayEvent) -> None:
        raise RuntimeError("db down")

    mocked.add("GET", f"{API}/cgi-bin/token", json={"access_token": "AT", "expires_in": 7200})
    mini.http.hook = broken
    assert mini.fetch_access_token().token == "AT"


def test_endpoints_defaults_and_validation() -> None:
    real = WeChatEndpoints()
    assert (real.api_base, real.pay_base, real.open_base) == (
        "https://api.weixin.qq.com",
        "https://api.mch.weixin.qq.com",
        "https://open.weixin.qq.com",
    )
    sandbox = WeChatEndpoints("http://127.0.0.1:8900/", "http://127.0.0.1:8900", "http://127.0.0.1:8900", 5)
    assert sandbox.pay("/v3/x") == "http://127.0.0.1:8900/v3/x"
    with pytest.raises(ValueError):
        WeChatEndpoints(api_base="ftp://x")
    with pytest.raises(ValueError):
        WeChatEndpoints(timeout_seconds=0)
