"""Small row factories for tests: plain functions that add and flush (never commit)."""

from __future__ import annotations

import itertools
from functools import cache

from app.audit.service import CLI
from app.auth.principals import Role
from app.consumers.models import Consumer, ConsumerStatus
from app.extensions import db
from app.merchants.models import Merchant
from app.merchants.service import create_merchant
from app.staff.models import StaffAccount, StaffMembership
from app.staff.passwords import hash_password

DEFAULT_PASSWORD = "correct horse battery staple"
_sequence = itertools.count(1)


@cache
def _default_hash() -> str:
    # argon2id is slow on purpose: hash the common test password once per run.
    return hash_password(DEFAULT_PASSWORD)


def make_merchant(slug: str | None = None, name: str | None = None) -> Merchant:
    """A merchant with no WeChat sections (enough for console and shop-key tests)."""
    n = next(_sequence)
    slug = slug or f"merchant-{n}"
    merchant = create_merchant(document={"slug": slug, "name": name or f"Merchant {n}"}, actor=CLI)
    db.session.flush()
    return merchant


def make_staff(
    email: str | None = None,
    *,
    merchant: Merchant | None = None,
    role: Role | None = None,
    password: str = DEFAULT_PASSWORD,
    is_platform_admin: bool = False,
    display_name: str = "Test Staff",
) -> StaffAccount:
    """A staff account, with ``role`` at ``merchant`` when both are given."""
    account = StaffAccount(
        email=(email or f"staff{next(_sequence)}@example.com").lower(),
        display_name=display_name,
        password_hash=_default_hash() if password == DEFAULT_PASSWORD else hash_password(password),
        is_platform_admin=is_platform_admin,
        failed_logins=0,
        session_epoch=0,
    )
    db.session.add(account)
    db.session.flush()
    if merchant is not None and role is not None:
        db.session.add(StaffMembership(staff_id=account.id, merchant_id=merchant.id, role=role))
        db.session.flush()
    return account


def make_consumer(merchant: Merchant, *, nickname: str | None = None) -> Consumer:
    consumer = Consumer(
        merchant_id=merchant.id,
        nickname=nickname or f"consumer {next(_sequence)}",
        status=ConsumerStatus.ACTIVE,
    )
    db.session.add(consumer)
    db.session.flush()
    return consumer
