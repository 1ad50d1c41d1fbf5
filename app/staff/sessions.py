"""Console sessions: Flask's signed cookie holding the staff id, the account's session epoch, the
issue and last-seen times and a CSRF token. Nothing is stored server-side; bumping the epoch ends every
session. A session ends at its TTL from login, or sooner after the idle timeout without a request.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from flask import current_app, request, session
from sqlalchemy import select

from app.audit.service import Actor
from app.auth.principals import Role, StaffPrincipal
from app.core.errors import Unauthenticated
from app.extensions import db
from app.staff.models import StaffAccount, StaffMembership
from app.staff.service import MembershipView, bump_session_epoch, memberships_of, verify_login

# Tolerated clock difference between web processes when checking a session's issue time.
_CLOCK_SKEW_SECONDS = 60
# How stale the cookie's last-seen time may get before a request moves it on (to the minute is enough
# for an idle timeout measured in hours).
_SEEN_RESOLUTION_SECONDS = 60


@dataclass(frozen=True)
class ConsoleSession:
    """What the console learns about its session (``GET/POST /api/console/v1/session``)."""

    staff: StaffAccount
    csrf_token: str
    memberships: list[MembershipView]


def _describe(account: StaffAccount) -> ConsoleSession:
    return ConsoleSession(
        staff=account, csrf_token=str(session.get("csrf", "")), memberships=memberships_of(account.id)
    )


def open_session(*, email: str, password: str) -> ConsoleSession:
    """Check the password (with rate limits and lockout) and start a fresh session cookie."""
    account = verify_login(email=email, password=password, ip=request.remote_addr)
    # A new cookie from scratch: nothing from before the login (fixation) survives.
    session.clear()
    session.permanent = True
    session["staff_id"] = account.id
    session["session_epoch"] = account.session_epoch
    session["issued_at"] = session["seen_at"] = int(time.time())
    session["csrf"] = secrets.token_urlsafe(32)
    return _describe(account)


def describe_session(principal: StaffPrincipal) -> ConsoleSession:
    """The current session's account, CSRF token and memberships."""
    return _describe(db.session.get_one(StaffAccount, principal.staff_id))


def close_session() -> None:
    """Log out this browser (other sessions of the account stay valid)."""
    session.clear()


def revoke_all_sessions(principal: StaffPrincipal) -> None:
    """End every session of the account, this one included."""
    bump_session_epoch(staff_id=principal.staff_id, actor=Actor("staff", str(principal.staff_id)))
    session.clear()


def authenticate_staff() -> StaffPrincipal:
    """The staff member of the session cookie: unexpired, current epoch, account enabled."""
    staff_id = session.get("staff_id")
    epoch = session.get("session_epoch")
    issued_at = session.get("issued_at")
    if not isinstance(staff_id, int) or not isinstance(epoch, int) or not isinstance(issued_at, int):
        raise Unauthenticated("console login required")
    security = current_app.extensions["hongli.settings"].security
    now = time.time()
    age = now - issued_at
    if age >= security.staff_session_ttl_seconds or age < -_CLOCK_SKEW_SECONDS:
        raise Unauthenticated("the console session has expired; log in again")
    seen_at = session.get("seen_at")
    # Never later than now: a web process with a fast clock must not lengthen the idle window.
    seen_at = min(seen_at if isinstance(seen_at, int) else issued_at, int(now))
    if now - seen_at >= security.staff_session_idle_seconds:
        raise Unauthenticated("the console session was idle too long; log in again")
    account = db.session.get(StaffAccount, staff_id)
    if account is None or account.disabled_at is not None or account.session_epoch != epoch:
        raise Unauthenticated("the console session has ended; log in again")
    roles: dict[int, Role] = {
        merchant_id: role
        for merchant_id, role in db.session.execute(
            select(StaffMembership.merchant_id, StaffMembership.role).where(
                StaffMembership.staff_id == staff_id
            )
        ).tuples()
    }
    if now - seen_at >= _SEEN_RESOLUTION_SECONDS or session.get("seen_at") != seen_at:
        session["seen_at"] = int(now)  # moved on, clamped, or first set on an older cookie
    return StaffPrincipal(
        staff_id=account.id, email=account.email, is_platform_admin=account.is_platform_admin, roles=roles
    )
