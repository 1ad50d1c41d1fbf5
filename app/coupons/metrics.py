"""Per stock and channel: issued, claimed, redeemed, redemption rate, time to redeem, GMV driven, cost.

Definitions (the seeds'): *issued* = coupons that took a place (not refused by WeChat); *claimed* = in the
user's card pack (a voucher WeChat confirmed, a merchant coupon bound by ``COUPON.SEND``); *redeemed* =
used on an order; redemption rate = redeemed / claimed (basis points); time to redeem = from claimed to
used (mean and worst, seconds); GMV driven = the totals of the orders they were used on; cost = what the
campaign paid for them net of refunds (the coupon's own cost plus its two-way legs, from the grants).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import BigInteger, func, select, true, type_coerce

from app.core.money import BASIS_POINTS_PER_WHOLE
from app.coupons.models import Coupon, CouponStatus, CouponStock
from app.extensions import db
from app.orders.models import Order
from app.rebates.models import RebateGrant

_CLAIMED = (CouponStatus.SENT, CouponStatus.CLAIMED, CouponStatus.USED)


def _fen(column: Any) -> Any:
    return type_coerce(column, BigInteger)


def stock_metrics(*, merchant_id: int, stock_id: int | None = None) -> list[dict[str, Any]]:
    """One row per stock (only ``stock_id``'s when given), each with its channels' rows; every figure from
    the coupons and the ledger."""
    wanted = stock_id

    def only(column: Any) -> Any:
        return column == wanted if wanted is not None else true()

    stocks = db.session.scalars(
        select(CouponStock)
        .where(CouponStock.merchant_id == merchant_id, only(CouponStock.id))
        .order_by(CouponStock.id)
    ).all()
    figures: dict[tuple[int, str], dict[str, Any]] = defaultdict(_blank)
    for stock_id, channel, status, n in db.session.execute(
        select(Coupon.stock_id, Coupon.channel, Coupon.status, func.count(Coupon.id))
        .where(Coupon.merchant_id == merchant_id, only(Coupon.stock_id))
        .group_by(Coupon.stock_id, Coupon.channel, Coupon.status)
    ):
        row = figures[(stock_id, channel.value)]
        if status is not CouponStatus.FAILED:
            row["issued"] += n
        if status in _CLAIMED:
            row["claimed"] += n
        if status is CouponStatus.USED:
            row["redeemed"] += n
    for stock_id, channel, claimed_at, sent_at, used_at, total in db.session.execute(
        select(
            Coupon.stock_id, Coupon.channel, Coupon.claimed_at, Coupon.sent_at, Coupon.used_at, Order.total
        )
        .join(Order, Order.id == Coupon.order_id)
        .where(Coupon.merchant_id == merchant_id, only(Coupon.stock_id), Coupon.status == CouponStatus.USED)
    ):
        row = figures[(stock_id, channel.value)]
        row["gmv_fen"] += total.fen
        start = claimed_at or sent_at
        if start is not None and used_at is not None:
            seconds = max(0, int((used_at - start).total_seconds()))
            row["_times"].append(seconds)
    for stock_id, channel, cost in db.session.execute(
        select(
            Coupon.stock_id, Coupon.channel, func.sum(_fen(RebateGrant.amount) - _fen(RebateGrant.reversed))
        )
        .join(RebateGrant, RebateGrant.coupon_id == Coupon.id)
        .where(Coupon.merchant_id == merchant_id, only(Coupon.stock_id))
        .group_by(Coupon.stock_id, Coupon.channel)
    ):
        figures[(stock_id, channel.value)]["cost_fen"] += int(cost or 0)
    out = []
    for stock in stocks:
        channels = [
            _finish(channel, row) for (sid, channel), row in sorted(figures.items()) if sid == stock.id
        ]
        total = _blank()
        for (sid, _), row in figures.items():
            if sid == stock.id:
                for key in ("issued", "claimed", "redeemed", "gmv_fen", "cost_fen"):
                    total[key] += row[key]
                total["_times"].extend(row["_times"])
        out.append(
            {
                "stock_id": stock.id,
                "kind": stock.kind.value,
                "name": stock.name,
                "status": stock.status.value,
                "limit": stock.limit,
                "max_coupons": stock.max_coupons,
                "wechat_max_coupons": stock.wechat_max_coupons,
                "limit_difference": (
                    None if stock.wechat_max_coupons is None else stock.max_coupons - stock.limit
                ),
                **_finish(None, total),
                "channels": channels,
            }
        )
    return out


def _blank() -> dict[str, Any]:
    return {"issued": 0, "claimed": 0, "redeemed": 0, "gmv_fen": 0, "cost_fen": 0, "_times": []}


def _finish(channel: str | None, row: dict[str, Any]) -> dict[str, Any]:
    times: list[int] = row["_times"]
    claimed = row["claimed"]
    return {
        **({"channel": channel} if channel is not None else {}),
        "issued": row["issued"],
        "claimed": claimed,
        "redeemed": row["redeemed"],
        "redemption_rate_bp": row["redeemed"] * BASIS_POINTS_PER_WHOLE // claimed if claimed else 0,
        "mean_seconds_to_redeem": sum(times) // len(times) if times else None,
        "max_seconds_to_redeem": max(times) if times else None,
        "gmv_fen": row["gmv_fen"],
        "cost_fen": row["cost_fen"],
    }
