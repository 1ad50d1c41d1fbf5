"""Per stock and channel: issued, claimed, redeemed, redemption rate, time to redeem, GMV driven, cost.

Definitions (the seeds'): *issued* = coupons that took a place (not refused by WeChat); *claimed* = in the
user's card pack (a voucher WeChat confirmed, a merchant coupon bound by ``COUPON.SEND``); *redeemed* =
used on an order; redemption rate = redeemed / claimed (basis points); time to redeem = from claimed to
used (mean and worst, seconds); GMV driven = the totals of the orders they were used on; cost = what the
campaign paid for them net of refunds (the coupon's own cost plus its two-way legs, from the grants).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, and_, case, extract, func, select, type_coerce

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
    the coupons and the ledger. Two round trips: the stocks, then one aggregate per stock and channel."""
    mine = [Coupon.merchant_id == merchant_id]
    stock_filter = [CouponStock.merchant_id == merchant_id]
    if stock_id is not None:
        mine.append(Coupon.stock_id == stock_id)
        stock_filter.append(CouponStock.id == stock_id)
    stocks = db.session.scalars(select(CouponStock).where(*stock_filter).order_by(CouponStock.id)).all()
    # Each coupon's cost net of refunds: its grants summed first, so a coupon row is counted once below.
    costs = (
        select(
            RebateGrant.coupon_id.label("coupon_id"),
            func.sum(_fen(RebateGrant.amount) - _fen(RebateGrant.reversed)).label("cost"),
        )
        .where(RebateGrant.coupon_id.in_(select(Coupon.id).where(*mine)))
        .group_by(RebateGrant.coupon_id)
        .subquery()
    )
    used = Coupon.status == CouponStatus.USED
    on_order = and_(used, Order.id.is_not(None))  # used on an order Hongli knows (GMV and time)
    start = func.coalesce(Coupon.claimed_at, Coupon.sent_at)
    waited = extract("epoch", Coupon.used_at) - extract("epoch", start)
    timed = and_(on_order, start.is_not(None), Coupon.used_at.is_not(None))
    seconds = case((waited > 0, func.floor(waited)), else_=0)
    figures: dict[tuple[int, str], dict[str, Any]] = {}
    for sid, channel, issued, claimed, redeemed, gmv, total_s, timed_n, worst, cost in db.session.execute(
        select(
            Coupon.stock_id,
            Coupon.channel,
            func.sum(case((Coupon.status != CouponStatus.FAILED, 1), else_=0)),
            func.sum(case((Coupon.status.in_(_CLAIMED), 1), else_=0)),
            func.sum(case((used, 1), else_=0)),
            func.sum(case((on_order, _fen(Order.total)), else_=0)),
            func.sum(case((timed, seconds), else_=None)),
            func.count(case((timed, 1), else_=None)),
            func.max(case((timed, seconds), else_=None)),
            func.sum(func.coalesce(costs.c.cost, 0)),
        )
        .outerjoin(Order, Order.id == Coupon.order_id)
        .outerjoin(costs, costs.c.coupon_id == Coupon.id)
        .where(*mine)
        .group_by(Coupon.stock_id, Coupon.channel)
    ):
        figures[(sid, channel.value)] = {
            "issued": int(issued or 0),
            "claimed": int(claimed or 0),
            "redeemed": int(redeemed or 0),
            "gmv_fen": int(gmv or 0),
            "cost_fen": int(cost or 0),
            "_seconds": int(total_s or 0),
            "_timed": int(timed_n or 0),
            "_worst": None if worst is None else int(worst),
        }
    out = []
    for stock in stocks:
        channels = [
            _finish(channel, row) for (sid, channel), row in sorted(figures.items()) if sid == stock.id
        ]
        total = _blank()
        for (sid, _), row in figures.items():
            if sid == stock.id:
                for key in ("issued", "claimed", "redeemed", "gmv_fen", "cost_fen", "_seconds", "_timed"):
                    total[key] += row[key]
                if row["_worst"] is not None:
                    total["_worst"] = max(total["_worst"] or 0, row["_worst"])
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
    return {
        "issued": 0,
        "claimed": 0,
        "redeemed": 0,
        "gmv_fen": 0,
        "cost_fen": 0,
        "_seconds": 0,  # from claim to use, summed over the coupons timed
        "_timed": 0,
        "_worst": None,
    }


def _finish(channel: str | None, row: dict[str, Any]) -> dict[str, Any]:
    claimed, timed = row["claimed"], row["_timed"]
    return {
        **({"channel": channel} if channel is not None else {}),
        "issued": row["issued"],
        "claimed": claimed,
        "redeemed": row["redeemed"],
        "redemption_rate_bp": row["redeemed"] * BASIS_POINTS_PER_WHOLE // claimed if claimed else 0,
        "mean_seconds_to_redeem": row["_seconds"] // timed if timed else None,
        "max_seconds_to_redeem": row["_worst"] if timed else None,
        "gmv_fen": row["gmv_fen"],
        "cost_fen": row["cost_fen"],
    }
