"""What pools hold in their campaign's reserve (read by the campaign ledger checks)."""

from __future__ import annotations

from sqlalchemy import BigInteger, func, select, type_coerce

from app.extensions import db
from app.pools.models import Pool, PoolGrant, PoolStatus


def outstanding_by_campaign() -> dict[int, int]:
    """Per campaign, the part of pools' reservations no grant took and no close released yet (fen)."""
    taken = (
        select(PoolGrant.pool_id, func.sum(type_coerce(PoolGrant.reserved, BigInteger)).label("taken"))
        .group_by(PoolGrant.pool_id)
        .subquery()
    )
    rows = db.session.execute(
        select(Pool.campaign_id, Pool.reserved, Pool.released, func.coalesce(taken.c.taken, 0))
        .outerjoin(taken, taken.c.pool_id == Pool.id)
        .where(Pool.status != PoolStatus.DRAFT)
    ).all()
    held: dict[int, int] = {}
    for campaign_id, reserved, released, grants in rows:
        held[campaign_id] = held.get(campaign_id, 0) + (reserved - released).fen - int(grants)
    return held
