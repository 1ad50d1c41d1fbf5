"""Seams for capabilities being built beside the dashboard (coupons): they report their cost here.

Until a provider is set, the dashboard shows the coupon cost as not reported (``None``), never as 0. Coupons
are paid from the campaigns' accounts, so the provider reports the part of the campaigns' cost that coupons
booked; the dashboard shows it beside the rebates' rest and counts it once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

CouponCost = Callable[..., int]
_coupon_cost: list[CouponCost] = []


def set_coupon_cost_provider(provider: CouponCost) -> None:
    """Coupons call this at start-up with ``provider(merchant_id=, since=, until=) -> fen`` (from the ledger)."""
    _coupon_cost[:] = [provider]


def coupon_cost_fen(*, merchant_id: int, since: datetime, until: datetime) -> int | None:
    if not _coupon_cost:
        return None
    return _coupon_cost[0](merchant_id=merchant_id, since=since, until=until)
