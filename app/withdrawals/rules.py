"""Withdrawal policy arithmetic (pure): fee, debt netting, the Beijing day a limit counts in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.core.money import Money

BEIJING = timedelta(hours=8)


def fee_for(amount: Money, fee_bp: int) -> Money:
    """The fee on ``amount`` at ``fee_bp`` basis points, rounded down to the fen (house rule)."""
    return amount.apply_rate(fee_bp)


def debt_to_net(available: Money, debt: Money) -> Money:
    """How much of ``debt`` (owed, positive) a withdrawal first repays from ``available``.

    Debt is netted first: a consumer with debt can withdraw only what exceeds it.
    """
    if debt.fen <= 0 or available.fen <= 0:
        return Money(0)
    return Money(min(available.fen, debt.fen))


def beijing_day_start(now: datetime) -> datetime:
    """00:00 Beijing time of ``now``'s Beijing day, in UTC: daily limits reset at Beijing midnight."""
    local = now.astimezone(UTC) + BEIJING
    return datetime(local.year, local.month, local.day, tzinfo=UTC) - BEIJING
