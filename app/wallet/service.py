"""Wallet reads: O(1) balances (cached on the ledger accounts, never recomputed per read) and a
paginated timeline of the postings on the consumer's accounts, each with a reason a person can read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from app.core.money import Money
from app.extensions import db
from app.ledger.accounts import consumer_accounts, natural_key
from app.ledger.models import AccountKind, EntryReason, JournalEntry, LedgerAccount, OwnerType, Posting
from app.merchants.models import Merchant
from app.orders.models import Order
from app.personal.service import packets_of
from app.rebates.service import available_from

_BUCKET = {
    AccountKind.CONSUMER_PENDING: "pending",
    AccountKind.CONSUMER_AVAILABLE: "available",
    AccountKind.CONSUMER_WITHDRAWING: "withdrawing",
    AccountKind.CONSUMER_DEBT: "debt",
    AccountKind.CONSUMER_PREPAID: "prepaid",  # paid for personal red packets to friends (app.personal)
}


@dataclass(frozen=True)
class Wallet:
    pending: Money
    available: Money
    withdrawing: Money
    debt: Money  # what the consumer owes (positive), netted against future rebates


@dataclass(frozen=True)
class Line:
    id: int
    bucket: str
    amount: Money
    at: datetime
    reason: str
    explanation: str


def wallet_of(*, merchant_id: int, consumer_id: int) -> Wallet:
    balance = consumer_accounts(merchant_id, consumer_id).balances()
    debt = balance[AccountKind.CONSUMER_DEBT]
    return Wallet(
        pending=balance[AccountKind.CONSUMER_PENDING],
        available=balance[AccountKind.CONSUMER_AVAILABLE],
        withdrawing=balance[AccountKind.CONSUMER_WITHDRAWING],
        debt=-debt if debt.is_negative else Money(0),
    )


def timeline(*, merchant_id: int, consumer_id: int, limit: int = 20, before: int | None = None) -> list[Line]:
    """Newest first; ``before`` is the id of the last line of the previous page. Personal red packets the
    consumer paid for appear as ``prepaid`` lines (paid, handed to the friend, refunded)."""
    # A read creates no account: the buckets already made, and the prepaid one if they ever paid for one.
    by_id: dict[int, LedgerAccount] = {
        a.id: a for a in consumer_accounts(merchant_id, consumer_id).existing()
    }
    prepaid = db.session.scalar(
        select(LedgerAccount).where(
            LedgerAccount.natural_key
            == natural_key(
                kind=AccountKind.CONSUMER_PREPAID,
                owner_type=OwnerType.CONSUMER,
                owner_id=consumer_id,
                merchant_id=merchant_id,
            )
        )
    )
    if prepaid is not None:
        by_id[prepaid.id] = prepaid
    query = (
        select(Posting, JournalEntry)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(Posting.account_id.in_(by_id))
        .order_by(Posting.id.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(Posting.id < before)
    merchant = db.session.get(Merchant, merchant_id)
    window = merchant.after_sales_window_days if merchant else 7
    lines = []
    for posting, entry in db.session.execute(query):
        bucket = _BUCKET[by_id[posting.account_id].kind]
        lines.append(
            Line(
                posting.id,
                bucket,
                posting.amount,
                entry.created_at,
                entry.reason.value,
                _explain(entry, bucket, posting.amount, window),
            )
        )
    return lines


def timeline_page(
    *, merchant_id: int, consumer_id: int, limit: int = 20, before: int | None = None
) -> dict[str, Any]:
    """A page of :func:`timeline`, and on the first page the consumer's personal red packets, sent and
    received (a received one moves no money of theirs until spent, so it has no ledger line)."""
    lines = timeline(merchant_id=merchant_id, consumer_id=consumer_id, limit=limit, before=before)
    packets = (
        [] if before is not None else packets_of(merchant_id=merchant_id, consumer_id=consumer_id, limit=20)
    )
    return {
        "lines": lines,
        "next_before": lines[-1].id if len(lines) == limit else None,
        "personal_packets": packets,
    }


def _explain(entry: JournalEntry, bucket: str, amount: Money, window_days: int) -> str:
    memo = entry.memo or ""
    if entry.reason is EntryReason.REBATE_PENDING:
        order = db.session.get(Order, int(entry.cause_id)) if entry.cause_type == "order" else None
        when = available_from(order, window_days) if order is not None else None
        if when is not None:
            return f"{memo} — pending until {when.date().isoformat()}: after-sales window"
        return f"{memo} — pending until the order is received and its {window_days}-day after-sales window passes"
    if entry.reason is EntryReason.SETTLE:
        return f"available: {memo}" if bucket == "available" else memo
    if entry.reason is EntryReason.CLAWBACK:
        return f"{memo}" + (" (shortfall recorded as debt)" if bucket == "debt" else "")
    return memo or entry.reason.value.replace("_", " ")
