"""A merchant, and helpers that move money the way the domains will: through post_entry only."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.core.money import Money
from app.extensions import db
from app.ledger.accounts import platform_account
from app.ledger.models import AccountKind, EntryReason, JournalEntry, LedgerAccount, Posting
from app.ledger.service import post_entry
from app.merchants.models import Merchant
from tests.factories import make_merchant

_keys = itertools.count(1)


def next_key(prefix: str = "test") -> str:
    return f"{prefix}:{next(_keys)}"


@pytest.fixture
def merchant(db_session: Session) -> Merchant:
    return make_merchant()


def fund(
    account: LedgerAccount, fen: int, *, merchant_id: int | None, key: str | None = None
) -> JournalEntry:
    """Move ``fen`` into ``account`` from the platform's funding source (which may go negative)."""
    source = platform_account(AccountKind.PLATFORM_FUNDING_SOURCE)
    entry = post_entry(
        key=key or next_key("fund"),
        reason=EntryReason.FUNDING,
        cause_type="test",
        cause_id="fund",
        lines=[(source, Money(-fen)), (account, Money(fen))],
        merchant_id=merchant_id,
    )
    assert entry is not None
    return entry


def move(
    source: LedgerAccount, target: LedgerAccount, fen: int, *, merchant_id: int | None, key: str | None = None
) -> JournalEntry | None:
    return post_entry(
        key=key or next_key("move"),
        reason=EntryReason.BUDGET_TRANSFER,
        cause_type="test",
        cause_id="move",
        lines=[(source, Money(-fen)), (target, Money(fen))],
        merchant_id=merchant_id,
    )


def stored_balance(account_id: int) -> int:
    """The cached balance straight from the table (not from an ORM object that may be stale)."""
    row = db.session.execute(text("SELECT balance FROM ledger_accounts WHERE id = :id"), {"id": account_id})
    return int(row.scalar_one())


def postings_sum(account_id: int) -> int:
    total = db.session.execute(
        text("SELECT COALESCE(SUM(amount), 0) FROM postings WHERE account_id = :id"), {"id": account_id}
    )
    return int(total.scalar_one())


def entry_count(key: str | None = None) -> int:
    query = select(func.count(JournalEntry.id))
    if key is not None:
        query = query.where(JournalEntry.idempotency_key == key)
    return int(db.session.scalar(query) or 0)


def posting_count() -> int:
    return int(db.session.scalar(select(func.count(Posting.id))) or 0)
