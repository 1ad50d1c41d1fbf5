"""Credentials, session keys and tokens never appear in a log line or an API response."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from app.core.logging import make_handler
from app.merchants.service import merchant_secrets
from tests.sandbox import Sandbox


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Everything logged, at DEBUG, through the production handler (JSON, scrubbed)."""
    stream = io.StringIO()
    handler = make_handler(stream, "json")
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous)


def test_a_full_login_session_leaks_nothing(
    client: FlaskClient, sandbox: Sandbox, db_session: Session, captured_logs: io.StringIO
) -> None:
    merchant = sandbox.onboard("acme-tea")
    secrets = merchant_secrets(merchant)
    sandbox.user(id="nora", nickname="Nora")
    appid = merchant.mp_appid or ""
    code = sandbox.login_code("nora", appid)
    login = client.post("/api/mp/v1/login", json={"appid": appid, "code": code})
    token = login.json["token"]
    headers = {"Authorization": f"Bearer {token}", "X-WX-AppId": appid}
    sealed = sandbox.post("/users/nora/encrypted-data", {"appid": appid, "data": {"nickName": "Nora"}})
    responses = [
        login,
        client.get("/api/mp/v1/me", headers=headers),
        client.post(
            "/api/mp/v1/me/profile",
            headers=headers,
            json={"encrypted_data": sealed["encryptedData"], "iv": sealed["iv"]},
        ),
        client.get("/h5/v1/oauth/start", query_string={"appid": merchant.oa_appid, "next": "/"}),
    ]
    logging.getLogger("hongli.test").info("merchant loaded %s", secrets)  # even a careless log line
    logging.getLogger("hongli.test").info("debug dump apiv3_key=%s", secrets.apiv3_key)
    key_material = [
        secrets.mp_secret,
        secrets.oa_secret,
        secrets.oa_token,
        secrets.oa_encoding_aes_key,
        secrets.apiv3_key,
        secrets.v2_api_key,
        secrets.pay_private_key_pem.splitlines()[1],
        sealed["session_key"],
    ]
    logs = captured_logs.getvalue()
    assert "request" in logs  # the capture works
    bodies = "".join(r.get_data(as_text=True) for r in responses[1:])
    for secret in key_material:
        assert secret and secret not in logs, "secret in logs"
        assert secret not in bodies, "secret in a response"
    assert token not in logs
