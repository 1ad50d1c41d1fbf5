"""A campaign's numbers for the console: packets by state, budget, cost booked, GMV driven, rates.

Definitions (product brief, console metrics): redemption rate = redeemed / issued; ROI = (GMV driven −
cost) / cost, where cost is every rebate grant booked (the face values spent, the two-way legs and the
other rules' rebates) less what refunds clawed back, and GMV driven is the total of the orders that
redeemed one of the campaign's packets less what was refunded on them (both refund-adjusted). Rates are decimal strings rounded down, never floats.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from app.campaigns.service import budget_balances, get_campaign
from app.campaigns.simulation import ratio, roi
from app.core.money import Money
from app.extensions import db
from app.orders.models import Order
from app.rebates.models import RebateGrant
from app.red_packets.models import RedPacket, RedPacketStatus


def _fen(value: Money | int | None) -> Money:
    # COALESCE(SUM(money), 0) is typed as Money; be lenient in case a driver hands back a plain number.
    return value if isinstance(value, Money) else Money(int(value or 0))


def campaign_stats(*, merchant_id: int, campaign_id: int) -> dict[str, Any]:
    """Read-only numbers of one campaign of ``merchant_id`` (404 for anyone else's)."""
    campaign = get_campaign(merchant_id=merchant_id, campaign_id=campaign_id)
    by_status: dict[RedPacketStatus, int] = {
        status: number
        for status, number in db.session.execute(
            select(RedPacket.status, func.count())
            .where(RedPacket.campaign_id == campaign.id)
            .group_by(RedPacket.status)
        ).tuples()
    }
    count = {status: by_status.get(status, 0) for status in RedPacketStatus}
    issued = sum(count.values())
    booked, reversed_ = db.session.execute(
        select(
            func.coalesce(func.sum(RebateGrant.amount), 0), func.coalesce(func.sum(RebateGrant.reversed), 0)
        ).where(RebateGrant.campaign_id == campaign.id)
    ).one()
    cost = _fen(booked) - _fen(reversed_)
    gmv = _fen(
        db.session.scalar(
            select(func.coalesce(func.sum(Order.total - Order.refunded), 0))
            .join(RedPacket, RedPacket.order_id == Order.id)
            .where(RedPacket.campaign_id == campaign.id, RedPacket.status == RedPacketStatus.REDEEMED)
        )
    )
    remaining, reserved = budget_balances(campaign)
    return {
        "packets": {
            "issued": issued,
            "live": count[RedPacketStatus.ISSUED] + count[RedPacketStatus.RESERVED],
            "redeemed": count[RedPacketStatus.REDEEMED],
            "expired": count[RedPacketStatus.EXPIRED],
            "revoked": count[RedPacketStatus.REVOKED],
        },
        "budget_remaining_fen": remaining.fen,
        "budget_reserved_fen": reserved.fen,
        "booked_fen": _fen(booked).fen,
        "reversed_fen": _fen(reversed_).fen,
        "cost_fen": cost.fen,
        "gmv_driven_fen": gmv.fen,
        "redemption_rate": ratio(count[RedPacketStatus.REDEEMED], issued),
        "roi": roi(gmv, cost),
        "skip_stats": dict(campaign.skip_stats or {}),
    }
