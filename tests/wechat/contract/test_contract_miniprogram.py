"""MiniProgramClient against the sandbox: login codes, access tokens, encryptedData (protocol doc §1)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.wechat.contract.conftest import ENDPOINTS, Sandbox
from wechat.errors import VerificationError, WeChatError
from wechat.miniprogram import MiniProgramClient, decrypt_user_data


def _client(sandbox: Sandbox) -> tuple[MiniProgramClient, dict[str, Any], dict[str, Any]]:
    app = sandbox.mini_program()
    user = sandbox.user(nickname="小程序用户")
    return MiniProgramClient(app["appid"], app["secret"], ENDPOINTS), app, user


def _code(sandbox: Sandbox, user: dict[str, Any], app: dict[str, Any]) -> str:
    return str(sandbox.post(f"/users/{user['id']}/login-code", {"appid": app["appid"]})["code"])


def test_code_to_session_returns_the_users_identity(sandbox: Sandbox) -> None:
    client, app, user = _client(sandbox)
    session = client.code_to_session(_code(sandbox, user, app))
    view = sandbox.get(f"/users/{user['id']}")
    assert session.openid == view["openids"][app["appid"]]
    assert session.unionid == view["unionid"]
    assert len(session.session_key) == 24  # base64 of 16 bytes


def test_reused_code_is_40163_and_final(sandbox: Sandbox) -> None:
    client, app, user = _client(sandbox)
    code = _code(sandbox, user, app)
    client.code_to_session(code)
    with pytest.raises(WeChatError) as exc:
        client.code_to_session(code)
    assert (exc.value.code, exc.value.final, exc.value.retryable) == ("40163", True, False)


def test_unknown_or_foreign_code_is_40029_and_final(sandbox: Sandbox) -> None:
    client, _app, user = _client(sandbox)
    other_app = sandbox.mini_program()
    foreign = _code(sandbox, user, other_app)
    for code in ("not-a-code", foreign):
        with pytest.raises(WeChatError) as exc:
            client.code_to_session(code)
        assert (exc.value.code, exc.value.final) == ("40029", True)


def test_expired_code_is_40029(sandbox: Sandbox) -> None:
    client, app, user = _client(sandbox)
    code = _code(sandbox, user, app)
    sandbox.advance(301)
    with pytest.raises(WeChatError) as exc:
        client.code_to_session(code)
    assert exc.value.code == "40029"


def test_login_faults_are_classified(sandbox: Sandbox) -> None:
    client, app, user = _client(sandbox)
    code = _code(sandbox, user, app)
    sandbox.fault("mp.jscode2session", "error", code="-1")
    with pytest.raises(WeChatError) as exc:
        client.code_to_session(code)
    assert (exc.value.code, exc.value.retryable) == ("-1", True)
    sandbox.fault("mp.jscode2session", "timeout")
    with pytest.raises(WeChatError) as exc:
        client.code_to_session(code)
    assert (exc.value.code, exc.value.ambiguous) == ("TIMEOUT", True)
    sandbox.fault("mp.jscode2session", "malformed")
    with pytest.raises(WeChatError) as exc:
        client.code_to_session(code)
    assert (exc.value.code, exc.value.ambiguous) == ("UNPARSABLE", True)
    # None of the failed attempts consumed the code ("error" / uncommitted timeout and malformed).
    assert client.code_to_session(code).openid == user["openids"][app["appid"]]


def test_fetch_access_token_and_stable_token(sandbox: Sandbox) -> None:
    client, app, _user = _client(sandbox)
    first = client.fetch_access_token()
    assert first.expires_in == 7200
    tokens = sandbox.world.state.access_tokens
    assert tokens[first.token].appid == app["appid"]
    second = client.fetch_access_token()
    assert second.token != first.token
    # The previous cgi-bin/token lives on for the 5-minute overlap only (§1.3).
    assert tokens[first.token].expires_at == pytest.approx(sandbox.world.clock.now() + 300)

    stable = client.fetch_access_token(stable=True)
    assert stable.token not in (first.token, second.token)
    assert tokens[stable.token].stable
    sandbox.advance(100)
    again = client.fetch_access_token(stable=True)
    assert (again.token, again.expires_in) == (stable.token, 7100)
    forced = client.fetch_access_token(stable=True, force=True)
    assert forced.token != stable.token
    assert forced.expires_in == 7200


def test_wrong_secret_is_40125_final(sandbox: Sandbox) -> None:
    _client_ok, app, _user = _client(sandbox)
    bad = MiniProgramClient(app["appid"], "0" * 32, ENDPOINTS)
    with pytest.raises(WeChatError) as exc:
        bad.fetch_access_token()
    assert (exc.value.code, exc.value.final) == ("40125", True)


def test_decrypt_user_data_from_sandbox_encrypted_data(sandbox: Sandbox) -> None:
    client, app, user = _client(sandbox)
    session = client.code_to_session(_code(sandbox, user, app))
    phone = {"phoneNumber": "13800138000", "purePhoneNumber": "13800138000", "countryCode": "86"}
    enc = sandbox.post(f"/users/{user['id']}/encrypted-data", {"appid": app["appid"], "data": phone})
    assert enc["session_key"] == session.session_key
    data = decrypt_user_data(session.session_key, enc["encryptedData"], enc["iv"], app["appid"])
    assert {k: data[k] for k in phone} == phone
    assert data["watermark"] == {"appid": app["appid"], "timestamp": int(sandbox.world.clock.now())}

    with pytest.raises(VerificationError) as exc:
        decrypt_user_data(session.session_key, enc["encryptedData"], enc["iv"], "wx-someone-else")
    assert (exc.value.code, exc.value.final) == ("WATERMARK", True)

    # A newer login rotates session_key: old encryptedData no longer decrypts with it.
    newer = client.code_to_session(_code(sandbox, user, app))
    assert newer.session_key != session.session_key
    with pytest.raises(VerificationError) as exc:
        decrypt_user_data(newer.session_key, enc["encryptedData"], enc["iv"], app["appid"])
    assert exc.value.code in ("DECRYPT_FAILED", "WATERMARK")
