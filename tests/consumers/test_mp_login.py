"""Mini-program login through the WeChat sandbox: tokens, tenancy, WeChat errors, encryptedData."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.consumers.models import Consumer, ConsumerSession, ConsumerStatus, WeChatIdentity
from app.core.db import utcnow
from app.merchants.credentials import get_sealer
from app.merchants.models import Merchant
from app.merchants.service import merchant_secrets
from tests.sandbox import Sandbox


def _login(client: FlaskClient, sandbox: Sandbox, merchant: Merchant, user_id: str) -> dict[str, Any]:
    assert merchant.mp_appid
    code = sandbox.login_code(user_id, merchant.mp_appid)
    response = client.post("/api/mp/v1/login", json={"appid": merchant.mp_appid, "code": code})
    assert response.status_code == 200, response.json
    return response.json  # type: ignore[no-any-return]


def _auth(token: str, appid: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-WX-AppId": appid or ""}


@pytest.fixture
def merchant(sandbox: Sandbox, db_session: Session) -> Merchant:
    return sandbox.onboard("acme-tea")


def test_login_then_call_an_authenticated_endpoint(
    client: FlaskClient, sandbox: Sandbox, merchant: Merchant, db_session: Session
) -> None:
    user = sandbox.user(id="alice", nickname="Alice")
    body = _login(client, sandbox, merchant, "alice")
    assert body["token"].startswith("hc_")
    assert body["expires_in"] == 7 * 86400
    me = client.get("/api/mp/v1/me", headers=_auth(body["token"], merchant.mp_appid))
    assert me.status_code == 200
    assert me.json["id"] == body["user"]["id"]
    identity = db_session.scalars(select(WeChatIdentity).filter_by(consumer_id=body["user"]["id"])).one()
    assert identity.openid == user["openids"][merchant.mp_appid]
    assert identity.sealed_session_key and "session_key" not in identity.sealed_session_key


def test_relogin_is_the_same_consumer_and_a_reused_code_creates_nothing(
    client: FlaskClient, sandbox: Sandbox, merchant: Merchant, db_session: Session
) -> None:
    sandbox.user(id="bob")
    first = _login(client, sandbox, merchant, "bob")
    second = _login(client, sandbox, merchant, "bob")
    assert first["user"]["id"] == second["user"]["id"]
    code = sandbox.login_code("bob", merchant.mp_appid or "")
    assert client.post("/api/mp/v1/login", json={"appid": merchant.mp_appid, "code": code}).status_code == 200
    reused = client.post("/api/mp/v1/login", json={"appid": merchant.mp_appid, "code": code})
    assert reused.status_code == 400
    assert reused.json["error"]["code"] == "login_code_rejected"
    assert reused.json["error"]["details"]["wechat_code"] == "40163"
    assert db_session.scalar(select(func.count()).select_from(Consumer)) == 1


@pytest.mark.parametrize(
    ("wechat_code", "status", "error_code"),
    [("40029", 400, "login_code_rejected"), ("45011", 429, "rate_limited"), ("-1", 503, "wechat_busy")],
)
def test_wechat_login_errors_become_clear_client_errors(
    client: FlaskClient,
    sandbox: Sandbox,
    merchant: Merchant,
    wechat_code: str,
    status: int,
    error_code: str,
    db_session: Session,
) -> None:
    sandbox.user(id="carol")
    sandbox.post("/faults", {"api": "mp.jscode2session", "mode": "error", "code": wechat_code})
    code = sandbox.login_code("carol", merchant.mp_appid or "")
    response = client.post("/api/mp/v1/login", json={"appid": merchant.mp_appid, "code": code})
    assert response.status_code == status, response.json
    assert response.json["error"]["code"] == error_code
    assert db_session.scalar(select(func.count()).select_from(Consumer)) == 0


def test_bad_input_is_refused_before_wechat(client: FlaskClient, merchant: Merchant) -> None:
    assert (
        client.post("/api/mp/v1/login", json={"appid": "wx0000000000000000", "code": "x"}).status_code == 404
    )
    invalid = client.post("/api/mp/v1/login", json={"appid": "not-an-appid", "code": ""})
    assert invalid.status_code == 422
    assert set(invalid.json["error"]["details"]["fields"]) == {"appid", "code"}


def test_a_token_is_bound_to_its_merchant(client: FlaskClient, sandbox: Sandbox, merchant: Merchant) -> None:
    other = sandbox.onboard("other-shop")
    sandbox.user(id="dave")
    token = _login(client, sandbox, merchant, "dave")["token"]
    assert client.get("/api/mp/v1/me", headers=_auth(token, other.mp_appid)).status_code == 401
    assert client.get("/api/mp/v1/me", headers=_auth(token, other.oa_appid)).status_code == 401
    assert client.get("/api/mp/v1/me", headers=_auth(token, None)).status_code == 401
    # The same WeChat user at the other merchant is another consumer.
    theirs = _login(client, sandbox, other, "dave")
    mine = client.get("/api/mp/v1/me", headers=_auth(token, merchant.mp_appid)).json
    assert theirs["user"]["id"] != mine["id"]


def test_logout_expiry_and_ban_end_a_token(
    client: FlaskClient, sandbox: Sandbox, merchant: Merchant, db_session: Session
) -> None:
    sandbox.user(id="erin")
    appid = merchant.mp_appid
    token = _login(client, sandbox, merchant, "erin")["token"]
    assert client.post("/api/mp/v1/logout", headers=_auth(token, appid)).status_code == 204
    assert client.get("/api/mp/v1/me", headers=_auth(token, appid)).status_code == 401

    token = _login(client, sandbox, merchant, "erin")["token"]
    db_session.execute(update(ConsumerSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert client.get("/api/mp/v1/me", headers=_auth(token, appid)).status_code == 401

    token = _login(client, sandbox, merchant, "erin")["token"]
    db_session.execute(update(Consumer).values(status=ConsumerStatus.BANNED))
    assert client.get("/api/mp/v1/me", headers=_auth(token, appid)).status_code == 401
    code = sandbox.login_code("erin", appid or "")
    banned = client.post("/api/mp/v1/login", json={"appid": appid, "code": code})
    assert banned.status_code == 401


def test_profile_and_phone_from_encrypted_data(
    client: FlaskClient, sandbox: Sandbox, merchant: Merchant
) -> None:
    sandbox.user(id="fay")
    appid = merchant.mp_appid or ""
    token = _login(client, sandbox, merchant, "fay")["token"]
    profile = sandbox.post(
        "/users/fay/encrypted-data",
        {"appid": appid, "data": {"nickName": "Fay", "avatarUrl": "https://img.example/f.png"}},
    )
    response = client.post(
        "/api/mp/v1/me/profile",
        headers=_auth(token, appid),
        json={"encrypted_data": profile["encryptedData"], "iv": profile["iv"]},
    )
    assert response.status_code == 200, response.json
    assert response.json["nickname"] == "Fay"
    phone = sandbox.post(
        "/users/fay/encrypted-data",
        {
            "appid": appid,
            "data": {"phoneNumber": "13800138000", "purePhoneNumber": "13800138000", "countryCode": "86"},
        },
    )
    response = client.post(
        "/api/mp/v1/me/phone",
        headers=_auth(token, appid),
        json={"encrypted_data": phone["encryptedData"], "iv": phone["iv"]},
    )
    assert response.json["phone_masked"] == "138****8000"
    assert "13800138000" not in response.get_data(as_text=True)


def test_encrypted_data_for_another_app_is_refused(
    client: FlaskClient, sandbox: Sandbox, merchant: Merchant
) -> None:
    """The watermark must name this mini-program: data sealed for the official account does not pass."""
    sandbox.user(id="gus")
    appid = merchant.mp_appid or ""
    token = _login(client, sandbox, merchant, "gus")["token"]
    sealed = sandbox.post("/users/gus/encrypted-data", {"appid": appid, "data": {"nickName": "Gus"}})
    tampered = sealed["encryptedData"][:-8] + (
        "A" * 8 if not sealed["encryptedData"].endswith("A" * 8) else "B" * 8
    )
    response = client.post(
        "/api/mp/v1/me/profile",
        headers=_auth(token, appid),
        json={"encrypted_data": tampered, "iv": sealed["iv"]},
    )
    assert response.status_code == 422
    assert client.get("/api/mp/v1/me", headers=_auth(token, appid)).json["nickname"] is None


# The public demo vector of the mini-program docs (§1.2 of the protocol reference).
DEMO_APPID = "wx4f4bc4dec97d474b"
DEMO_SESSION_KEY = "tiihtNczf5v6AKRyjwEUhQ=="
DEMO_IV = "r7BXXKkLb8qrSNn05n0qiA=="
DEMO_ENCRYPTED = (
    "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+"
    "3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6"
    "/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs"
    "8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns"
    "/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG"
    "20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew=="
)


def test_the_public_demo_vector_decrypts_through_the_app(
    client: FlaskClient, sandbox: Sandbox, merchant: Merchant, db_session: Session
) -> None:
    """The demo ``encryptedData`` opens through the stored, sealed session key of a consumer."""
    merchant.mp_appid = DEMO_APPID
    db_session.flush()
    sandbox.post(
        "/apps", {"kind": "miniprogram", "appid": DEMO_APPID, "secret": merchant_secrets(merchant).mp_secret}
    )
    sandbox.user(id="demo-user")
    token = _login(client, sandbox, merchant, "demo-user")["token"]
    identity = db_session.scalars(select(WeChatIdentity).where(WeChatIdentity.appid == DEMO_APPID)).one()
    identity.sealed_session_key = get_sealer().seal_text(
        DEMO_SESSION_KEY, context=f"identity:{identity.id}:session_key"
    )
    db_session.flush()
    response = client.post(
        "/api/mp/v1/me/profile",
        headers=_auth(token, DEMO_APPID),
        json={"encrypted_data": DEMO_ENCRYPTED, "iv": DEMO_IV},
    )
    assert response.status_code == 200, response.json
    assert response.json["nickname"] == "Band"


def test_login_attempts_are_limited_per_ip(client: FlaskClient, merchant: Merchant) -> None:
    statuses = [
        client.post("/api/mp/v1/login", json={"appid": "wx0000000000000000", "code": "x"}).status_code
        for _ in range(31)
    ]
    assert statuses[:30] == [404] * 30
    last = client.post("/api/mp/v1/login", json={"appid": "wx0000000000000000", "code": "x"})
    assert last.status_code == 429
    assert int(last.headers["Retry-After"]) >= 1
    assert last.json["error"]["code"] == "rate_limited"


def test_phone_number_from_a_get_phone_number_code(
    client: FlaskClient, sandbox: Sandbox, merchant: Merchant
) -> None:
    """The current flow: the button's code goes to WeChat's getuserphonenumber; single use, this app only."""
    sandbox.user(id="gus")
    appid = merchant.mp_appid or ""
    token = _login(client, sandbox, merchant, "gus")["token"]
    code = sandbox.post("/users/gus/phone-code", {"appid": appid, "phone": "13912345678"})["code"]

    stored = client.post("/api/mp/v1/me/phone-number", headers=_auth(token, appid), json={"code": code})
    again = client.post("/api/mp/v1/me/phone-number", headers=_auth(token, appid), json={"code": code})
    other_app = sandbox.post("/users/gus/phone-code", {"appid": merchant.oa_appid, "phone": "13000000000"})[
        "code"
    ]
    foreign = client.post("/api/mp/v1/me/phone-number", headers=_auth(token, appid), json={"code": other_app})

    assert (stored.status_code, stored.json["phone_masked"]) == (200, "139****5678"), stored.json
    assert "13912345678" not in stored.get_data(as_text=True)
    assert [again.status_code, foreign.status_code] == [422, 422]
    me = client.get("/api/mp/v1/me", headers=_auth(token, appid))
    assert me.json["phone_masked"] == "139****5678"
