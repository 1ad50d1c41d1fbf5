"""What coupons cost a merchant over a time range, read from the ledger (the dashboard's coupon cost).

A used coupon is booked like a spent red packet (``app.rebates.service.book_coupon_use``): one grant for
the coupon's own cost (``coupon_discount``) and one per two-way leg, each a journal entry keyed
``grant:{order}:{rule version}:{rule}:{beneficiary}`` out of the campaign's reserve; a refund claws each
grant back pro rata (``clawback:{grant}:refund:{refund}``) into the campaign's budget. The coupon cost of
a range is the campaign accounts' net outflow in those entries: used less refunded, on the entries' dates.
Two round trips: the range's first entry id (one backward primary-key scan), then one sum.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, String, case, cast, func, literal, literal_column, select, union_all

from app.dashboard.service import first_id_since
from app.extensions import db
from app.ledger.models import AccountKind, EntryReason, JournalEntry, LedgerAccount, Posting
from app.payments.models import Refund
from app.rebates.models import RebateGrant

_CAMPAIGN_ACCOUNTS = (AccountKind.CAMPAIGN_BUDGET, AccountKind.CAMPAIGN_RESERVED)


def _text(column: Any) -> Any:
    return cast(column, String)


def _cause_number(kind: str) -> Any:
    # Only an order's or a refund's cause id is read as a number (other causes may not be numbers).
    return case((JournalEntry.cause_type == kind, cast(JournalEntry.cause_id, BigInteger)), else_=None)


def coupon_cost_fen(*, merchant_id: int, since: datetime, until: datetime) -> int:
    """Coupon cost booked in ``[since, until)``: coupons' own cost and their legs, less refunds (fen)."""
    bound = first_id_since(JournalEntry.id, JournalEntry.created_at, since)

    def in_range(*reasons: EntryReason, cause: str) -> Any:
        return (
            select(Posting.amount.label("amount"))
            .select_from(JournalEntry)
            .join(Posting, Posting.entry_id == JournalEntry.id)
            .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
            .where(
                # Inlined (an int): a bound parameter would let a generic plan forget it is selective.
                JournalEntry.id > literal_column(str(int(bound))),
                JournalEntry.merchant_id == merchant_id,
                JournalEntry.created_at >= since,
                JournalEntry.created_at < until,
                JournalEntry.cause_type == cause,
                JournalEntry.reason.in_(reasons),
                LedgerAccount.kind.in_(_CAMPAIGN_ACCOUNTS),
            )
        )

    used = in_range(EntryReason.RED_PACKET_REDEEM, EntryReason.REBATE_PENDING, cause="order").join(
        RebateGrant,
        (RebateGrant.order_id == _cause_number("order"))
        & RebateGrant.coupon_id.is_not(None)
        & (
            JournalEntry.idempotency_key
            == literal("grant:")
            + _text(RebateGrant.order_id)
            + ":"
            + _text(RebateGrant.rule_version_id)
            + ":"
            + RebateGrant.rule_id
            + ":"
            + RebateGrant.beneficiary
        ),
    )
    refunded = (
        in_range(EntryReason.CLAWBACK, cause="refund")
        .join(Refund, Refund.id == _cause_number("refund"))
        .join(
            RebateGrant,
            (RebateGrant.order_id == Refund.order_id)
            & RebateGrant.coupon_id.is_not(None)
            & (
                JournalEntry.idempotency_key
                == literal("clawback:") + _text(RebateGrant.id) + ":refund:" + JournalEntry.cause_id
            ),
        )
    )
    moved = union_all(used, refunded).subquery()
    total = db.session.scalar(select(func.coalesce(func.sum(moved.c.amount), 0)))
    return -int(getattr(total, "fen", total) or 0)
