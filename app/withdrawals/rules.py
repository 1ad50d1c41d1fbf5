"""Withdrawal policy arithmetic (pure): fee, debt netting, the Beijing day a limit counts in."""

from __future__ import annotations

from app.core.calendar import beijing_day_start
from app.core.money import Money

__all__ = ["beijing_day_start", "debt_to_net", "fee_for"]  # the day a daily limit counts in


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
