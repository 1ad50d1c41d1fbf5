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
    """The pool's figures: the pool read, then every figure in one statement (scalar subqueries), then the
    funnel in one more (3 round trips in all)."""
    pool = get_pool(merchant_id=merchant_id, pool_id=pool_id)
    of_pool = PoolGrant.pool_id == pool.id
    best = (
        select(PoolGrant.consumer_id, _fen(PoolGrant.amount).label("fen"))
        .where(of_pool)
        .order_by(PoolGrant.amount.desc(), PoolGrant.id)
        .limit(1)
        .subquery()
    )
    spent = (
        select(Order.total)
        .select_from(PoolGrant)
        .join(RedPacket, RedPacket.id == PoolGrant.red_packet_id)
        .join(Order, Order.id == RedPacket.order_id)
        .where(of_pool, RedPacket.status == RedPacketStatus.REDEEMED, Order.status == OrderStatus.PAID)
        .subquery()
    )
    paid_rewards = (PoolTierReward.pool_id == pool.id, PoolTierReward.red_packet_id.is_not(None))
    row = db.session.execute(
        select(
            select(func.count()).where(of_pool).scalar_subquery(),
            select(func.coalesce(func.sum(_fen(PoolGrant.amount)), 0)).where(of_pool).scalar_subquery(),
            select(best.c.consumer_id).scalar_subquery(),
            select(best.c.fen).scalar_subquery(),
            select(func.count()).select_from(spent).scalar_subquery(),
            select(func.coalesce(func.sum(_fen(spent.c.total)), 0)).scalar_subquery(),
            select(func.count()).where(*paid_rewards).scalar_subquery(),
            select(func.coalesce(func.sum(_fen(PoolTierReward.amount)), 0))
            .where(*paid_rewards)
            .scalar_subquery(),
        )
    ).one()
    grabbed, grabbed_fen, best_consumer, best_fen, redeemed, gmv, rewards, rewards_fen = (
        None if value is None else int(value) for value in row
    )
    grabbed, grabbed_fen = grabbed or 0, grabbed_fen or 0
    # 手气最佳 is decided once the pool is fully grabbed or closed.
    decided = best_consumer is not None and (grabbed == pool.count or pool.status is PoolStatus.CLOSED)
    return {
        "pool_id": pool.id,
        "status": pool.status.value,
        "count": pool.count,
        "grabbed": grabbed,
        "grabbed_fen": grabbed_fen,
        "unclaimed": pool.count - grabbed,
        "unclaimed_fen": pool.total.fen - grabbed_fen,
        "best_luck_consumer_id": best_consumer if decided else None,
        "best_luck_fen": best_fen if decided else None,
        "redeemed": redeemed or 0,
        "redemption_rate_bp": (redeemed or 0) * 10_000 // grabbed if grabbed else 0,
        "gmv_driven_fen": gmv or 0,
        "tier_rewards": rewards or 0,
        "tier_rewards_fen": rewards_fen or 0,
        "funnel": fission.funnel(pool.id),
    }
