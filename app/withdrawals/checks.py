"""The withdrawal domain's part of ``ledger check``: how its daily-limit counters are derived."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import BigInteger, literal, select, type_coerce

from app.core.calendar import beijing_day_start
from app.extensions import db
from app.limits.checks import Rule, register_limit
from app.limits.service import WITHDRAWAL_DAILY_FEN
from app.withdrawals.models import Withdrawal, WithdrawalStatus


def _counted_withdrawals() -> Iterator[tuple[int, int, int, datetime, int]]:
    # Every withdrawal but a rejected one counts on the day (Beijing) it was created (merchant-wide: scope 0).
    yield from db.session.execute(
        select(
            Withdrawal.merchant_id,
            literal(0, BigInteger),
            Withdrawal.consumer_id,
            Withdrawal.created_at,
            type_coerce(Withdrawal.amount, BigInteger),
        )
        .where(Withdrawal.status != WithdrawalStatus.REJECTED)
        .order_by(Withdrawal.id)
        .execution_options(yield_per=1000)
    ).tuples()


def register() -> None:
    """Register the daily withdrawal limit's rule with the limit-counter check."""
    register_limit(
        WITHDRAWAL_DAILY_FEN,
        Rule(window_of=beijing_day_start, rows=_counted_withdrawals, counted="withdrawals"),
    )
