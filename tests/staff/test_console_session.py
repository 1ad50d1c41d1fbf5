"""Console login: cookie + CSRF, expiry, epochs, no account enumeration, lockout and rate limits."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEntry
from app.auth.principals import Role
from app.core.db import utcnow
from app.settings import Settings
from app.staff.models import StaffAccount
from app.staff.service import lockout_seconds
from tests.conftest import AppFactory
from tests.console_client import Console
from tests.factories import DEFAULT_PASSWORD, make_merchant, make_staff

SESSION = "/api/console/v1/session"


def _login(client: FlaskClient, email: str, password: str = DEFAULT_PASSWORD) -> tuple[int, dict]:
    response = client.post(SESSION, json={"email": email, "password": password})
    return response.status_code, response.json or {}


@pytest.fixture
def owner(db_session: Session) -> StaffAccount:
    merchant = make_merchant("acme", "Acme Tea")
    return make_staff("Owner@Example.com", merchant=merchant, role=Role.OWNER, display_name="Olive")


def test_login_sets_a_hardened_cookie_and_returns_csrf_and_memberships(
    client: FlaskClient, owner: StaffAccount
) -> None:
    response = client.post(SESSION, json={"email": "  OWNER@example.com ", "password": DEFAULT_PASSWORD})
    assert response.status_code == 200, response.json
    body = response.json
    assert body["staff"] == {
        "id": owner.id,
        "email": "owner@example.com",
        "display_name": "Olive",
        "is_platform_admin": False,
    }
    assert body["memberships"] == [{"merchant": "acme", "merchant_name": "Acme Tea", "role": "owner"}]
    assert len(body["csrf_token"]) >= 32
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Expires=" in cookie
    assert "password" not in response.get_data(as_text=True)
    again = client.get(SESSION)
    assert again.status_code == 200
    assert again.json["csrf_token"] == body["csrf_token"]
    assert owner.last_login_at is not None


def test_unknown_email_and_wrong_password_get_the_same_answer(
    client: FlaskClient, owner: StaffAccount
) -> None:
    wrong = client.post(SESSION, json={"email": "owner@example.com", "password": "not the password!"})
    unknown = client.post(SESSION, json={"email": "nobody@example.com", "password": "not the password!"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json == unknown.json
    assert client.get(SESSION).status_code == 401


def test_unsafe_methods_need_the_csrf_header(client: FlaskClient, owner: StaffAccount) -> None:
    console = Console(client).login(owner.email)
    missing = client.delete(SESSION)
    assert missing.status_code == 403
    assert missing.json["error"]["code"] == "forbidden"
    assert client.delete(SESSION, headers={"X-CSRF-Token": "guess"}).status_code == 403
    assert client.get(SESSION).status_code == 200  # still logged in
    assert console.delete(SESSION).status_code == 204
    assert client.get(SESSION).status_code == 401


def test_a_new_login_gets_a_new_csrf_token(client: FlaskClient, owner: StaffAccount) -> None:
    first = Console(client).login(owner.email).csrf
    second = Console(client).login(owner.email).csrf
    assert first != second
    assert client.delete(SESSION, headers={"X-CSRF-Token": first}).status_code == 403


def test_session_expires_after_the_ttl(client: FlaskClient, owner: StaffAccount, settings: Settings) -> None:
    Console(client).login(owner.email)
    with client.session_transaction() as cookie:
        cookie["issued_at"] -= settings.security.staff_session_ttl_seconds + 1
    response = client.get(SESSION)
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthenticated"


def test_a_tampered_cookie_is_refused(client: FlaskClient, owner: StaffAccount, app: Flask) -> None:
    Console(client).login(owner.email)
    cookie = client.get_cookie("session")
    assert cookie is not None
    client.set_cookie("session", cookie.value[:-2] + ("AA" if not cookie.value.endswith("AA") else "BB"))
    assert client.get(SESSION).status_code == 401


def test_revoke_all_ends_every_session(client: FlaskClient, app: Flask, owner: StaffAccount) -> None:
    laptop = Console(client).login(owner.email)
    phone = Console(app.test_client()).login(owner.email)
    assert phone.get(SESSION).status_code == 200
    assert laptop.post(SESSION + "/revoke-all").status_code == 204
    assert phone.get(SESSION).status_code == 401
    assert laptop.get(SESSION).status_code == 401
    Console(app.test_client()).login(owner.email)  # a fresh login works again


def test_disabled_account_loses_its_session_and_cannot_log_in(
    client: FlaskClient, owner: StaffAccount, db_session: Session
) -> None:
    Console(client).login(owner.email)
    owner.disabled_at = utcnow()
    db_session.flush()
    assert client.get(SESSION).status_code == 401
    status, body = _login(client, owner.email)
    assert status == 401
    assert body["error"]["message"] == "wrong email or password"


def test_outdated_hash_parameters_are_upgraded_at_login(
    client: FlaskClient, owner: StaffAccount, db_session: Session
) -> None:
    owner.password_hash = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(DEFAULT_PASSWORD)
    db_session.flush()
    old = owner.password_hash
    assert _login(client, owner.email)[0] == 200
    db_session.refresh(owner)
    assert owner.password_hash != old
    assert owner.password_hash.startswith("$argon2id$") and "m=65536,t=3" in owner.password_hash


def _expire_lock(db_session: Session, account: StaffAccount) -> None:
    account.locked_until = utcnow() - timedelta(seconds=1)
    db_session.flush()


def test_backoff_locks_without_checking_the_password_and_doubles(
    client: FlaskClient, owner: StaffAccount, db_session: Session, settings: Settings
) -> None:
    threshold = settings.security.staff_failures_before_lockout
    for _ in range(threshold):
        assert _login(client, owner.email, "wrong password!!")[0] == 401
    locked = client.post(SESSION, json={"email": owner.email, "password": DEFAULT_PASSWORD})
    assert locked.status_code == 429
    assert 55 <= int(locked.headers["Retry-After"]) <= 60
    assert locked.json["error"]["code"] == "rate_limited"
    db_session.refresh(owner)
    assert owner.failed_logins == threshold

    _expire_lock(db_session, owner)
    assert _login(client, owner.email, "wrong password!!")[0] == 401
    doubled = client.post(SESSION, json={"email": owner.email, "password": DEFAULT_PASSWORD})
    assert doubled.status_code == 429
    assert 115 <= int(doubled.headers["Retry-After"]) <= 120

    _expire_lock(db_session, owner)
    assert _login(client, owner.email)[0] == 200
    db_session.refresh(owner)
    assert owner.failed_logins == 0 and owner.locked_until is None
    actions = db_session.scalars(
        select(AuditEntry.action).where(
            AuditEntry.target_type == "staff", AuditEntry.target_id == str(owner.id)
        )
    ).all()
    assert actions.count("staff.login.locked") == 2
    assert actions.count("staff.login.failed") == threshold + 1  # each wrong password, locked or not
    assert "staff.login" in actions


def test_unknown_emails_lock_like_real_ones(
    client: FlaskClient, owner: StaffAccount, settings: Settings
) -> None:
    threshold = settings.security.staff_failures_before_lockout
    for email in ("owner@example.com", "ghost@example.com"):
        for _ in range(threshold):
            assert _login(client, email, "wrong password!!")[0] == 401
    real = client.post(SESSION, json={"email": "owner@example.com", "password": "wrong password!!"})
    ghost = client.post(SESSION, json={"email": "ghost@example.com", "password": "wrong password!!"})
    assert real.status_code == ghost.status_code == 429
    assert real.json == ghost.json


def test_lockout_threshold_comes_from_settings(
    settings: Settings, app_factory: AppFactory, db_session: Session, redis: object
) -> None:
    security = settings.security.model_copy(update={"staff_failures_before_lockout": 1})
    client = app_factory(settings.model_copy(update={"security": security})).test_client()
    # Another app tears its session down after each request: use plain values, not the row.
    make_staff("one@example.com")
    assert _login(client, "one@example.com", "wrong password!!")[0] == 401
    assert _login(client, "one@example.com")[0] == 429


def test_rate_limits_per_ip_and_per_email(
    settings: Settings,
    app_factory: AppFactory,
    db_session: Session,
    redis: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Fixed one-minute windows: freeze the clock so the test never straddles two of them.
    frozen = time.time()
    monkeypatch.setattr(time, "time", lambda: frozen)
    security = settings.security.model_copy(
        update={"login_attempts_per_ip_per_minute": 4, "login_attempts_per_account_per_minute": 2}
    )
    client = app_factory(settings.model_copy(update={"security": security})).test_client()
    make_staff("limited@example.com")
    statuses = [_login(client, "limited@example.com", "wrong password!!")[0] for _ in range(3)]
    assert statuses == [401, 401, 429]
    assert _login(client, "other@example.com", "wrong password!!")[0] == 401
    limited = client.post(SESSION, json={"email": "third@example.com", "password": "x"})
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1


def test_login_body_is_validated(client: FlaskClient) -> None:
    response = client.post(SESSION, json={"email": "a@b.cn"})
    assert response.status_code == 422
    assert "password" in response.json["error"]["details"]["fields"]
    form = client.post(SESSION, data={"email": "a@b.cn", "password": "x" * 12})
    assert form.status_code == 422  # only JSON: a cross-site form cannot log anyone in


def test_lockout_doubles_up_to_an_hour() -> None:
    assert [lockout_seconds(n, 5) for n in (4, 5, 6, 7, 11, 12, 40)] == [0, 60, 120, 240, 3600, 3600, 3600]


def test_a_non_ascii_csrf_header_is_a_403_not_a_crash(client: FlaskClient, owner: StaffAccount) -> None:
    Console(client).login(owner.email)
    response = client.delete(SESSION, headers={"X-CSRF-Token": "caf\u00e9"})
    assert response.status_code == 403


def test_cookie_is_secure_behind_https(
    settings: Settings, app_factory: AppFactory, db_session: Session
) -> None:
    web = settings.web.model_copy(update={"public_base_url": "https://console.example.com"})
    client = app_factory(settings.model_copy(update={"web": web})).test_client()
    make_staff("secure@example.com")
    response = client.post(SESSION, json={"email": "secure@example.com", "password": DEFAULT_PASSWORD})
    assert response.status_code == 200
    assert "Secure" in response.headers["Set-Cookie"]


def test_an_idle_session_ends_and_activity_slides_it(
    client: FlaskClient, owner: StaffAccount, settings: Settings
) -> None:
    idle = settings.security.staff_session_idle_seconds
    Console(client).login(owner.email)
    with client.session_transaction() as cookie:
        cookie["seen_at"] -= idle - 120  # used two minutes before it would have gone idle
    assert client.get(SESSION).status_code == 200
    with client.session_transaction() as cookie:
        assert time.time() - cookie["seen_at"] < 5  # the request slid it
        cookie["seen_at"] -= idle + 1

    response = client.get(SESSION)

    assert response.status_code == 401
    assert "idle" in response.json["error"]["message"]


def test_activity_does_not_outlive_the_ttl(
    client: FlaskClient, owner: StaffAccount, settings: Settings
) -> None:
    Console(client).login(owner.email)
    with client.session_transaction() as cookie:
        cookie["issued_at"] -= settings.security.staff_session_ttl_seconds + 1  # seen_at stays fresh
    assert client.get(SESSION).status_code == 401


def test_a_last_seen_time_from_the_future_is_clamped_to_now(
    client: FlaskClient, owner: StaffAccount, settings: Settings
) -> None:
    """A web process with a fast clock must not lengthen the idle window of the sessions it touches."""
    Console(client).login(owner.email)
    with client.session_transaction() as cookie:
        cookie["seen_at"] += 10 * settings.security.staff_session_idle_seconds

    assert client.get(SESSION).status_code == 200

    with client.session_transaction() as cookie:
        assert abs(time.time() - cookie["seen_at"]) < 5
