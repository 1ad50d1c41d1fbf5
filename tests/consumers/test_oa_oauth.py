"""Official-account web OAuth through the sandbox's authorize page: state bound to the browser, safe
return URLs, token in the fragment, userinfo, and unionid linking with the mini-program identity."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from app.consumers.models import Consumer
from app.merchants.models import Merchant
from tests.sandbox import Sandbox


@pytest.fixture
def merchant(sandbox: Sandbox, db_session: Session) -> Merchant:
    merchant = sandbox.onboard("acme-tea")
    merchant.h5_origins = ["https://h5.acme-tea.example"]
    db_session.flush()
    return merchant


def _authorize(sandbox: Sandbox, location: str, user_id: str, action: str | None = None) -> str:
    """Play the WeChat authorize page: returns where it sends the browser back to."""
    url = urlsplit(location)
    assert url.fragment == "wechat_redirect"
    query = f"{url.query}&sandbox_user={user_id}" + (f"&action={action}" if action else "")
    response = sandbox.admin.get(url.path, query_string=query)
    assert response.status_code == 302, response.get_data(as_text=True)
    return str(response.headers["Location"])


def _callback(client: FlaskClient, back: str) -> tuple[int, str]:
    url = urlsplit(back)
    assert url.path == "/h5/v1/oauth/callback"
    response = client.get(url.path, query_string=url.query)
    return response.status_code, response.headers.get("Location", "")


def test_userinfo_login_lands_on_next_with_a_token(
    client: FlaskClient, sandbox: Sandbox, merchant: Merchant
) -> None:
    sandbox.user(id="hana", nickname="Hana")
    start = client.get(
        "/h5/v1/oauth/start",
        query_string={
            "appid": merchant.oa_appid,
            "scope": "snsapi_userinfo",
            "next": "https://h5.acme-tea.example/rebates?x=1",
        },
    )
    assert start.status_code == 302
    authorize = urlsplit(start.headers["Location"])
    params = parse_qs(authorize.query)
    assert params["appid"] == [merchant.oa_appid] and params["scope"] == ["snsapi_userinfo"]
    assert params["redirect_uri"] == ["http://127.0.0.1:8000/h5/v1/oauth/callback"]
    status, landing = _callback(client, _authorize(sandbox, start.headers["Location"], "hana"))
    assert status == 302
    target = urlsplit(landing)
    assert (
        f"{target.scheme}://{target.netloc}{target.path}?{target.query}"
        == "https://h5.acme-tea.example/rebates?x=1"
    )
    fragment = parse_qs(target.fragment)
    token = fragment["token"][0]
    me = client.get(
        "/api/mp/v1/me", headers={"Authorization": f"Bearer {token}", "X-WX-AppId": merchant.oa_appid}
    )
    assert me.status_code == 200
    assert me.json["nickname"] == "Hana"


def test_state_from_another_browser_is_refused(
    client: FlaskClient, sandbox: Sandbox, merchant: Merchant, app_factory: object, db_session: Session
) -> None:
    sandbox.user(id="ivan")
    start = client.get("/h5/v1/oauth/start", query_string={"appid": merchant.oa_appid, "next": "/"})
    back = _authorize(sandbox, start.headers["Location"], "ivan")
    client.delete_cookie("hongli_oauth", path="/h5/v1/oauth")  # a different browser has no cookie
    status, _ = _callback(client, back)
    assert status == 422
    assert db_session.query(Consumer).count() == 0


def test_tampered_state_is_refused(client: FlaskClient, sandbox: Sandbox, merchant: Merchant) -> None:
    sandbox.user(id="jun")
    start = client.get("/h5/v1/oauth/start", query_string={"appid": merchant.oa_appid, "next": "/"})
    back = _authorize(sandbox, start.headers["Location"], "jun")
    forged = back.replace("state=", "state=0")
    status, _ = _callback(client, forged)
    assert status == 422


@pytest.mark.parametrize(
    "next_url", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"]
)
def test_only_safe_next_urls(client: FlaskClient, merchant: Merchant, next_url: str) -> None:
    response = client.get("/h5/v1/oauth/start", query_string={"appid": merchant.oa_appid, "next": next_url})
    assert response.status_code == 422
    assert "next" in response.json["error"]["details"]["fields"]


def test_declined_authorization_returns_without_a_token(
    client: FlaskClient, sandbox: Sandbox, merchant: Merchant
) -> None:
    sandbox.user(id="kai")
    start = client.get(
        "/h5/v1/oauth/start",
        query_string={"appid": merchant.oa_appid, "scope": "snsapi_userinfo", "next": "/home"},
    )
    status, landing = _callback(client, _authorize(sandbox, start.headers["Location"], "kai", action="deny"))
    assert status == 302
    assert landing == "/home#error=access_denied"


def test_follower_and_mini_program_user_are_one_consumer(
    client: FlaskClient, sandbox: Sandbox, merchant: Merchant
) -> None:
    sandbox.user(id="lin")
    code = sandbox.login_code("lin", merchant.mp_appid or "")
    mp_user = client.post("/api/mp/v1/login", json={"appid": merchant.mp_appid, "code": code}).json["user"]
    # WeChat discloses the unionid to web OAuth with the userinfo scope.
    start = client.get(
        "/h5/v1/oauth/start",
        query_string={"appid": merchant.oa_appid, "scope": "snsapi_userinfo", "next": "/"},
    )
    _, landing = _callback(client, _authorize(sandbox, start.headers["Location"], "lin"))
    token = parse_qs(urlsplit(landing).fragment)["token"][0]
    me = client.get(
        "/api/mp/v1/me", headers={"Authorization": f"Bearer {token}", "X-WX-AppId": merchant.oa_appid}
    )
    assert me.json["id"] == mp_user["id"]


def test_profile_refresh_uses_the_stored_refresh_token(
    client: FlaskClient, sandbox: Sandbox, merchant: Merchant
) -> None:
    sandbox.user(id="mei", nickname="Mei")
    start = client.get(
        "/h5/v1/oauth/start",
        query_string={"appid": merchant.oa_appid, "scope": "snsapi_userinfo", "next": "/"},
    )
    _, landing = _callback(client, _authorize(sandbox, start.headers["Location"], "mei"))
    token = parse_qs(urlsplit(landing).fragment)["token"][0]
    refreshed = client.post(
        "/api/mp/v1/me/refresh-profile",
        headers={"Authorization": f"Bearer {token}", "X-WX-AppId": merchant.oa_appid},
    )
    assert refreshed.status_code == 200, refreshed.json
    assert refreshed.json["nickname"] == "Mei"
