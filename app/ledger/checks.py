"""Ledger invariants, checked set-wise in SQL, plus a registry for domain checks added by other packages.

A check is a function of no arguments, run in an app context, returning violation strings (none = clean).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import BigInteger, and_, func, not_, or_, select, type_coerce
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql import ColumnElement

from app.core.money import Money
from app.extensions import db
from app.ledger.accounts import NEGATIVE_ALLOWED, OWNER_OF_KIND
from app.ledger.models import JournalEntry, LedgerAccount, OwnerType, Posting

logger = logging.getLogger("hongli.ledger")

Check = Callable[[], list[str]]
# Enough to act on; a corruption this wide is diagnosed with SQL, not by reading the list.
MAX_LISTED = 100

_CHECKS: dict[str, Check] = {}


def register_check(name: str, fn: Check) -> None:
    """Add (or replace) the check ``name``; ``ledger check`` runs every registered check in order."""
    _CHECKS[name] = fn


def unregister_check(name: str) -> None:
    _CHECKS.pop(name, None)


def registered_checks() -> dict[str, Check]:
    return dict(_CHECKS)


@dataclass(frozen=True)
class CheckResult:
    name: str
    violations: list[str]


def run_checks() -> list[CheckResult]:
    """Run every registered check; a check that crashes is reported as a violation, not raised."""
    results = []
    for name, fn in registered_checks().items():
        try:
            violations = list(fn())
        except Exception as exc:
            logger.exception("ledger check %s crashed", name)
            if isinstance(exc, SQLAlchemyError):
                # Checks only read: discarding the aborted transaction loses nothing and lets the next run.
                db.session.rollback()
            violations = [f"check crashed: {type(exc).__name__}: {exc}"]
        results.append(CheckResult(name=name, violations=violations))
    return results


def _fen(column: InstrumentedAttribute[Money]) -> ColumnElement[int]:
    # Sums are plain integers of fen, not Money (whose column type refuses bare ints).
    return type_coerce(column, BigInteger)


def _capped(rows: list[str]) -> list[str]:
    if len(rows) > MAX_LISTED:
        return [*rows[:MAX_LISTED], "… more not listed"]
    return rows


def entries_balance() -> list[str]:
    """Each entry's postings sum to zero."""
    total = func.sum(_fen(Posting.amount))
    rows = db.session.execute(
        select(Posting.entry_id, total)
        .group_by(Posting.entry_id)
        .having(total != 0)
        .order_by(Posting.entry_id)
        .limit(MAX_LISTED + 1)
    ).all()
    return _capped([f"entry {entry_id}: postings sum to {fen} fen, not 0" for entry_id, fen in rows])


def entries_have_postings() -> list[str]:
    """No entry without postings."""
    has_posting = select(Posting.id).where(Posting.entry_id == JournalEntry.id).exists()
    rows = db.session.execute(
        select(JournalEntry.id, JournalEntry.idempotency_key)
        .where(~has_posting)
        .order_by(JournalEntry.id)
        .limit(MAX_LISTED + 1)
    ).all()
    return _capped([f"entry {entry_id} ({key}) has no postings" for entry_id, key in rows])


def no_zero_postings() -> list[str]:
    """Zero lines are dropped before posting; one in the table means a write around post_entry."""
    rows = db.session.scalars(
        select(Posting.id).where(Posting.amount == Money(0)).order_by(Posting.id).limit(MAX_LISTED + 1)
    ).all()
    return _capped([f"posting {posting_id} has a zero amount" for posting_id in rows])


def cached_balances_match() -> list[str]:
    """Each account's cached balance equals the sum of its postings."""
    derived = func.coalesce(func.sum(_fen(Posting.amount)), 0)
    rows = db.session.execute(
        select(LedgerAccount.id, LedgerAccount.natural_key, LedgerAccount.balance, derived)
        .outerjoin(Posting, Posting.account_id == LedgerAccount.id)
        .group_by(LedgerAccount.id, LedgerAccount.natural_key, LedgerAccount.balance)
        .having(LedgerAccount.balance != derived)
        .order_by(LedgerAccount.id)
        .limit(MAX_LISTED + 1)
    ).all()
    return _capped(
        [
            f"account {account_id} ({key}): cached {cached.fen} fen, postings sum to {derived_fen} fen"
            for account_id, key, cached, derived_fen in rows
        ]
    )


def no_forbidden_negative() -> list[str]:
    """No negative balance where the account's kind forbids it, and every account's flag follows its kind."""
    negative_kinds = sorted(NEGATIVE_ALLOWED)
    rows = db.session.execute(
        select(
            LedgerAccount.id, LedgerAccount.natural_key, LedgerAccount.balance, LedgerAccount.allow_negative
        )
        .where(
            or_(
                and_(LedgerAccount.balance < Money(0), not_(LedgerAccount.kind.in_(negative_kinds))),
                LedgerAccount.allow_negative != LedgerAccount.kind.in_(negative_kinds),
            )
        )
        .order_by(LedgerAccount.id)
        .limit(MAX_LISTED + 1)
    ).all()
    return _capped(
        [
            f"account {account_id} ({key}): balance {amount.fen} fen, allow_negative={allow}"
            for account_id, key, amount, allow in rows
        ]
    )


def accounts_well_formed() -> list[str]:
    """Owner type matches the kind; platform accounts have no owner id, the others an owner and a merchant."""
    wrong = [
        and_(
            LedgerAccount.owner_type == owner,
            not_(LedgerAccount.kind.in_(sorted(k for k, o in OWNER_OF_KIND.items() if o is owner))),
        )
        for owner in OwnerType
    ]
    platform = LedgerAccount.owner_type == OwnerType.PLATFORM
    rows = db.session.execute(
        select(LedgerAccount.id, LedgerAccount.natural_key)
        .where(
            or_(
                *wrong,
                and_(platform, LedgerAccount.owner_id.is_not(None)),
                and_(~platform, or_(LedgerAccount.owner_id.is_(None), LedgerAccount.merchant_id.is_(None))),
            )
        )
        .order_by(LedgerAccount.id)
        .limit(MAX_LISTED + 1)
    ).all()
    return _capped([f"account {account_id} ({key}) is malformed" for account_id, key in rows])


def no_cross_merchant_postings() -> list[str]:
    """An entry only touches its own merchant's accounts and platform accounts."""
    rows = db.session.execute(
        select(Posting.id, Posting.entry_id, LedgerAccount.merchant_id, JournalEntry.merchant_id)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(
            LedgerAccount.merchant_id.is_not(None),
            or_(JournalEntry.merchant_id.is_(None), JournalEntry.merchant_id != LedgerAccount.merchant_id),
        )
        .order_by(Posting.id)
        .limit(MAX_LISTED + 1)
    ).all()
    return _capped(
        [
            f"posting {posting_id} of entry {entry_id} (merchant {entry_merchant}) "
            f"moves money of merchant {account_merchant}"
            for posting_id, entry_id, account_merchant, entry_merchant in rows
        ]
    )


def idempotency_keys_unique() -> list[str]:
    """The schema makes keys unique; this proves the deployed schema still does."""
    count = func.count(JournalEntry.id)
    rows = db.session.execute(
        select(JournalEntry.idempotency_key, count)
        .group_by(JournalEntry.idempotency_key)
        .having(count > 1)
        .limit(MAX_LISTED + 1)
    ).all()
    return _capped([f"idempotency key {key!r} used by {n} entries" for key, n in rows])


def trial_balance() -> list[str]:
    """All cached balances together sum to zero (every fen came from somewhere inside the ledger)."""
    fen = db.session.scalar(select(func.coalesce(func.sum(_fen(LedgerAccount.balance)), 0)))
    return [] if fen == 0 else [f"cached balances sum to {fen} fen, not 0"]


for _name, _check in (
    ("entries_balance", entries_balance),
    ("entries_have_postings", entries_have_postings),
    ("no_zero_postings", no_zero_postings),
    ("cached_balances_match", cached_balances_match),
    ("no_forbidden_negative", no_forbidden_negative),
    ("accounts_well_formed", accounts_well_formed),
    ("no_cross_merchant_postings", no_cross_merchant_postings),
    ("idempotency_keys_unique", idempotency_keys_unique),
    ("trial_balance", trial_balance),
):
    register_check(_name, _check)


def ledger_counts() -> dict[str, int]:
    """How much the checks looked at, for the summary line."""
    return {
        "accounts": db.session.scalar(select(func.count(LedgerAccount.id))) or 0,
        "entries": db.session.scalar(select(func.count(JournalEntry.id))) or 0,
        "postings": db.session.scalar(select(func.count(Posting.id))) or 0,
    }
