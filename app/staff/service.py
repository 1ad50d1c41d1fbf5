"""Staff accounts, their roles per merchant, and password login with lockout.

Every change is audited. Memberships are per merchant; a merchant always keeps at least one owner.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select, update

from app.audit.service import ANONYMOUS, Actor, record_audit
from app.auth.principals import Role
from app.core.db import utcnow
from app.core.errors import Conflict, InvalidInput, NotFound, RateLimited, Unauthenticated
from app.core.ratelimit import hit
from app.core.tx import commit
from app.extensions import db
from app.merchants.models import Merchant
from app.queue.queues import get_redis
from app.settings import SecuritySettings
from app.staff.models import StaffAccount, StaffMembership
from app.staff.passwords import burn_dummy_verify, hash_password, verify_password

LOGIN_FAILED = "wrong email or password"
# The same words as app.core.ratelimit, so a lockout and a rate limit cannot be told apart.
TOO_MANY_ATTEMPTS = "too many attempts; try again later"
FIRST_LOCK_SECONDS = 60
MAX_LOCK_SECONDS = 3600
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class MembershipView:
    merchant_id: int
    merchant: str  # slug
    merchant_name: str
    role: Role


@dataclass(frozen=True)
class MemberView:
    staff_id: int
    email: str
    display_name: str
    role: Role
    member_since: datetime
    last_login_at: datetime | None
    disabled: bool


# ---------------------------------------------------------------- accounts


def normalize_email(email: str) -> str:
    """Emails are compared and stored lowercase, without surrounding blanks."""
    normalized = email.strip().lower()
    if len(normalized) > 254 or not _EMAIL.match(normalized):
        raise InvalidInput("not an email address", details={"field": "email"})
    return normalized


def _account_snapshot(account: StaffAccount) -> dict[str, Any]:
    # What the audit log may hold about an account: never the hash.
    return {
        "email": account.email,
        "display_name": account.display_name,
        "is_platform_admin": account.is_platform_admin,
        "disabled": account.disabled_at is not None,
    }


def create_staff(
    *, email: str, display_name: str, password: str, is_platform_admin: bool = False, actor: Actor
) -> StaffAccount:
    """A new console account; the password must satisfy the policy and is stored as an argon2id hash."""
    normalized = normalize_email(email)
    display_name = display_name.strip()
    if not 1 <= len(display_name) <= 120:
        raise InvalidInput("a display name needs 1 to 120 characters", details={"field": "display_name"})
    if db.session.scalar(select(StaffAccount.id).where(StaffAccount.email == normalized)) is not None:
        raise Conflict("a staff account with this email already exists", details={"field": "email"})
    account = StaffAccount(
        email=normalized,
        display_name=display_name,
        password_hash=hash_password(password),
        is_platform_admin=is_platform_admin,
        failed_logins=0,
        session_epoch=0,
    )
    db.session.add(account)
    db.session.flush()
    record_audit(
        actor=actor,
        action="staff.create",
        target_type="staff",
        target_id=account.id,
        after=_account_snapshot(account),
    )
    return account


def get_staff_by_email(email: str) -> StaffAccount:
    account = db.session.scalar(select(StaffAccount).where(StaffAccount.email == normalize_email(email)))
    if account is None:
        raise NotFound("no staff account with this email", details={"field": "email"})
    return account


def list_accounts() -> list[StaffAccount]:
    return list(db.session.scalars(select(StaffAccount).order_by(StaffAccount.id)))


def memberships_of(staff_id: int) -> list[MembershipView]:
    """The merchants where ``staff_id`` holds a role, by slug."""
    rows = db.session.execute(
        select(StaffMembership.merchant_id, Merchant.slug, Merchant.name, StaffMembership.role)
        .join(Merchant, Merchant.id == StaffMembership.merchant_id)
        .where(StaffMembership.staff_id == staff_id)
        .order_by(Merchant.slug)
    ).all()
    return [MembershipView(merchant_id=r[0], merchant=r[1], merchant_name=r[2], role=r[3]) for r in rows]


# ---------------------------------------------------------------- memberships


def list_members(*, merchant_id: int) -> list[MemberView]:
    """Everyone holding a role at the merchant."""
    rows = db.session.execute(
        select(StaffMembership, StaffAccount)
        .join(StaffAccount, StaffAccount.id == StaffMembership.staff_id)
        .where(StaffMembership.merchant_id == merchant_id)
        .order_by(StaffAccount.email)
    ).all()
    return [_member_view(membership, account) for membership, account in rows]


def _member_view(membership: StaffMembership, account: StaffAccount) -> MemberView:
    return MemberView(
        staff_id=account.id,
        email=account.email,
        display_name=account.display_name,
        role=membership.role,
        member_since=membership.created_at,
        last_login_at=account.last_login_at,
        disabled=account.disabled_at is not None,
    )


def _locked_membership(merchant_id: int, staff_id: int) -> StaffMembership:
    # Role changes move no money. The owner-count check below is read-then-write: it relies on these row
    # locks on PostgreSQL and on BEGIN IMMEDIATE (one writer at a time) on SQLite.
    membership = db.session.scalar(
        select(StaffMembership)
        .where(StaffMembership.merchant_id == merchant_id, StaffMembership.staff_id == staff_id)
        .with_for_update()
    )
    if membership is None:
        raise NotFound("no such staff member at this merchant")
    return membership


def _require_another_owner(merchant_id: int, membership: StaffMembership) -> None:
    # Lock every owner row of the merchant so two concurrent demotions cannot both pass the check.
    owners = db.session.scalars(
        select(StaffMembership.id)
        .where(StaffMembership.merchant_id == merchant_id, StaffMembership.role == Role.OWNER)
        .with_for_update()
    ).all()
    if membership.role is Role.OWNER and len(owners) <= 1:
        raise Conflict("a merchant must keep at least one owner")


def add_member(*, merchant_id: int, email: str, role: Role, actor: Actor) -> MemberView:
    """Give an existing staff account a role at the merchant (accounts are created with the CLI)."""
    account = get_staff_by_email(email)
    existing = db.session.scalar(
        select(StaffMembership.id).where(
            StaffMembership.merchant_id == merchant_id, StaffMembership.staff_id == account.id
        )
    )
    if existing is not None:
        raise Conflict("this staff member already has a role here; change it instead")
    membership = StaffMembership(staff_id=account.id, merchant_id=merchant_id, role=role)
    db.session.add(membership)
    db.session.flush()
    record_audit(
        actor=actor,
        action="staff.membership.add",
        target_type="staff",
        target_id=account.id,
        merchant_id=merchant_id,
        after={"email": account.email, "role": role.value},
    )
    return _member_view(membership, account)


def change_member_role(*, merchant_id: int, staff_id: int, role: Role, actor: Actor) -> MemberView:
    """Change a member's role; the last owner cannot be demoted."""
    membership = _locked_membership(merchant_id, staff_id)
    before = membership.role
    if role is not Role.OWNER:
        _require_another_owner(merchant_id, membership)
    membership.role = role
    account = db.session.get_one(StaffAccount, staff_id)
    record_audit(
        actor=actor,
        action="staff.membership.change_role",
        target_type="staff",
        target_id=staff_id,
        merchant_id=merchant_id,
        before={"email": account.email, "role": before.value},
        after={"email": account.email, "role": role.value},
    )
    return _member_view(membership, account)


def remove_member(*, merchant_id: int, staff_id: int, actor: Actor) -> None:
    """Take away a member's role at the merchant; the last owner cannot be removed."""
    membership = _locked_membership(merchant_id, staff_id)
    _require_another_owner(merchant_id, membership)
    account = db.session.get_one(StaffAccount, staff_id)
    record_audit(
        actor=actor,
        action="staff.membership.remove",
        target_type="staff",
        target_id=staff_id,
        merchant_id=merchant_id,
        before={"email": account.email, "role": membership.role.value},
    )
    db.session.delete(membership)
    db.session.flush()


def grant_role(*, account: StaffAccount, merchant_id: int, role: Role, actor: Actor) -> MemberView:
    """Add the account at the merchant, or change its role there (the CLI's ``staff grant``)."""
    exists = db.session.scalar(
        select(StaffMembership.id).where(
            StaffMembership.merchant_id == merchant_id, StaffMembership.staff_id == account.id
        )
    )
    if exists is None:
        return add_member(merchant_id=merchant_id, email=account.email, role=role, actor=actor)
    return change_member_role(merchant_id=merchant_id, staff_id=account.id, role=role, actor=actor)


# ---------------------------------------------------------------- login


def lockout_seconds(failures: int, threshold: int) -> int:
    """How long to lock after ``failures`` consecutive failures: 1 min at the threshold, doubling, ≤ 1 h."""
    if failures < threshold:
        return 0
    return min(FIRST_LOCK_SECONDS * 2 ** min(failures - threshold, 12), MAX_LOCK_SECONDS)


def _security() -> SecuritySettings:
    security: SecuritySettings = current_app.extensions["hongli.settings"].security
    return security


def _ghost_keys(email: str) -> tuple[str, str]:
    prefix = current_app.extensions["hongli.settings"].queue.prefix
    digest = hashlib.sha256(email.encode()).hexdigest()[:32]
    return f"{prefix}:staff-login:ghost:{digest}:failures", f"{prefix}:staff-login:ghost:{digest}:lock"


def _ghost_lock_remaining(email: str) -> int:
    # Unknown emails are "locked" in Redis exactly like real accounts in the database, so the
    # 401-then-429 pattern does not reveal which emails have an account.
    ttl = int(get_redis().ttl(_ghost_keys(email)[1]))
    return max(ttl, 0)


def _ghost_failure(email: str, threshold: int) -> None:
    failures_key, lock_key = _ghost_keys(email)
    pipe = get_redis().pipeline()
    pipe.incr(failures_key)
    pipe.expire(failures_key, 2 * MAX_LOCK_SECONDS)
    failures = int(pipe.execute()[0])
    seconds = lockout_seconds(failures, threshold)
    if seconds:
        get_redis().set(lock_key, "1", ex=seconds)


def _record_failure(account: StaffAccount, now: datetime, threshold: int) -> None:
    account.failed_logins += 1
    seconds = lockout_seconds(account.failed_logins, threshold)
    # Every wrong password of a real account is audited (the IP is filled in), not only the lockouts:
    # a slow guesser staying under the threshold is still visible.
    record_audit(
        actor=ANONYMOUS,  # whoever typed the password, not (necessarily) the account's owner
        action="staff.login.failed",
        target_type="staff",
        target_id=account.id,
        after={"failed_logins": account.failed_logins},
    )
    if seconds:
        account.locked_until = now + timedelta(seconds=seconds)
        record_audit(
            actor=ANONYMOUS,
            action="staff.login.locked",
            target_type="staff",
            target_id=account.id,
            after={"failed_logins": account.failed_logins, "locked_seconds": seconds},
        )


def verify_login(*, email: str, password: str, ip: str | None, now: datetime | None = None) -> StaffAccount:
    """The account if ``password`` is right, else Unauthenticated (also for unknown emails) or RateLimited.

    While an account is locked the password is not even checked. A failure is committed before the
    error is raised, since the request's own transaction is rolled back.
    """
    now = now or utcnow()
    security = _security()
    hit(
        f"staff-login:ip:{ip or 'unknown'}",
        limit=security.login_attempts_per_ip_per_minute,
        window_seconds=60,
    )
    try:
        normalized = normalize_email(email)
    except InvalidInput:
        burn_dummy_verify(password)
        raise Unauthenticated(LOGIN_FAILED) from None
    email_digest = hashlib.sha256(normalized.encode()).hexdigest()[:32]
    hit(
        f"staff-login:email:{email_digest}",
        limit=security.login_attempts_per_account_per_minute,
        window_seconds=60,
    )
    # The lock makes concurrent wrong passwords count one by one on PostgreSQL (SQLite: serial). No money
    # moves here, and the Redis limiter above bounds attempts per minute whatever the database does.
    account = db.session.scalar(
        select(StaffAccount).where(StaffAccount.email == normalized).with_for_update()
    )
    if account is None:
        remaining = _ghost_lock_remaining(normalized)
        if remaining:
            raise RateLimited(TOO_MANY_ATTEMPTS, retry_after_seconds=remaining)
        burn_dummy_verify(password)
        _ghost_failure(normalized, security.staff_failures_before_lockout)
        raise Unauthenticated(LOGIN_FAILED)
    if account.locked_until is not None and account.locked_until > now:
        remaining = math.ceil((account.locked_until - now).total_seconds())
        raise RateLimited(TOO_MANY_ATTEMPTS, retry_after_seconds=max(remaining, 1))
    verification = verify_password(account.password_hash, password)
    if not verification.ok:
        _record_failure(account, now, security.staff_failures_before_lockout)
        commit()
        raise Unauthenticated(LOGIN_FAILED)
    if account.disabled_at is not None:
        raise Unauthenticated(LOGIN_FAILED)
    if verification.new_hash:
        account.password_hash = verification.new_hash
    account.failed_logins = 0
    account.locked_until = None
    account.last_login_at = now
    record_audit(
        actor=Actor("staff", str(account.id)), action="staff.login", target_type="staff", target_id=account.id
    )
    return account


def bump_session_epoch(*, staff_id: int, actor: Actor) -> None:
    """End every console session of the account (sessions carry the epoch they were issued under)."""
    db.session.execute(
        update(StaffAccount)
        .where(StaffAccount.id == staff_id)
        .values(session_epoch=StaffAccount.session_epoch + 1)
        .execution_options(synchronize_session="fetch")
    )
    record_audit(actor=actor, action="staff.sessions.revoke_all", target_type="staff", target_id=staff_id)


def set_password(*, account: StaffAccount, password: str, actor: Actor) -> None:
    """Replace the password, clear any lockout and end every session."""
    account.password_hash = hash_password(password)
    account.failed_logins = 0
    account.locked_until = None
    account.session_epoch += 1
    record_audit(
        actor=actor,
        action="staff.password.set",
        target_type="staff",
        target_id=account.id,
        after={"password": "changed"},
    )


def set_disabled(*, account: StaffAccount, disabled: bool, actor: Actor) -> StaffAccount:
    """Disable (every session stops working at once) or re-enable an account."""
    before = _account_snapshot(account)
    account.disabled_at = (account.disabled_at or utcnow()) if disabled else None
    record_audit(
        actor=actor,
        action="staff.disable" if disabled else "staff.enable",
        target_type="staff",
        target_id=account.id,
        before=before,
        after=_account_snapshot(account),
    )
    return account
