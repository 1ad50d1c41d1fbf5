"""Per-pool figures for the console: grabbed, best luck, unclaimed, redemption, GMV driven, the funnel."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, func, select, type_coerce

from app.extensions import db
from app.orders.models import Order, OrderStatus
from app.pools import fission
from app.pools.models import PoolGrant, PoolStatus, PoolTierReward
from app.pools.service import get_pool
from app.red_packets.models import RedPacket, RedPacketStatus


def _fen(column: Any) -> Any:
    return type_coerce(column, BigInteger)


def pool_stats(*, merchant_id: int, pool_id: int) -> dict[str, Any]:
    pool = get_pool(merchant_id=merchant_id, pool_id=pool_id)
    grabbed, grabbed_fen = db.session.execute(
        select(func.count(), func.coalesce(func.sum(_fen(PoolGrant.amount)), 0)).where(
            PoolGrant.pool_id == pool.id
        )
    ).one()
    best = db.session.execute(
        select(PoolGrant.consumer_id, _fen(PoolGrant.amount))
        .where(PoolGrant.pool_id == pool.id)
        .order_by(PoolGrant.amount.desc(), PoolGrant.id)
        .limit(1)
    ).first()
    redeemed, gmv = db.session.execute(
        select(func.count(), func.coalesce(func.sum(_fen(Order.total)), 0))
        .select_from(PoolGrant)
        .join(RedPacket, RedPacket.id == PoolGrant.red_packet_id)
        .join(Order, Order.id == RedPacket.order_id)
        .where(
            PoolGrant.pool_id == pool.id,
            RedPacket.status == RedPacketStatus.REDEEMED,
            Order.status == OrderStatus.PAID,
        )
    ).one()
    rewards, rewards_fen = db.session.execute(
        select(func.count(), func.coalesce(func.sum(_fen(PoolTierReward.amount)), 0)).where(
            PoolTierReward.pool_id == pool.id, PoolTierReward.red_packet_id.is_not(None)
        )
    ).one()
    grabbed, grabbed_fen = int(grabbed), int(grabbed_fen)
    return {
        "pool_id": pool.id,
        "status": pool.status.value,
        "count": pool.count,
        "grabbed": grabbed,
        "grabbed_fen": grabbed_fen,
        "unclaimed": pool.count - grabbed,
        "unclaimed_fen": pool.total.fen - grabbed_fen,
        # 手气最佳 is decided once the pool is fully grabbed or closed.
        "best_luck_consumer_id": best[0]
        if best and (grabbed == pool.count or pool.status is PoolStatus.CLOSED)
        else None,
        "best_luck_fen": int(best[1])
        if best and (grabbed == pool.count or pool.status is PoolStatus.CLOSED)
        else None,
        "redeemed": int(redeemed),
        "redemption_rate_bp": int(redeemed) * 10_000 // grabbed if grabbed else 0,
        "gmv_driven_fen": int(gmv),
        "tier_rewards": int(rewards),
        "tier_rewards_fen": int(rewards_fen),
        "funnel": fission.funnel(pool.id),
    }
