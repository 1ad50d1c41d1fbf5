"""What pools hold in their campaign's reserve (read by the campaign ledger checks)."""

from __future__ import annotations

from sqlalchemy import BigInteger, func, or_, select, type_coerce

from app.extensions import db
from app.pools.models import Pool, PoolGrant, PoolStatus


def outstanding_by_campaign() -> dict[int, int]:
    """Per campaign, the part of pools' reservations no packet took over, no cash payment moved out and no
    close released yet (fen)."""
    # Left the pool's hold: a packet's part (the packet holds it) and a paid cash share's (moved by entry).
    # An unpaid cash share's part is still the pool's.
    taken = (
        select(PoolGrant.pool_id, func.sum(type_coerce(PoolGrant.reserved, BigInteger)).label("taken"))
        .where(or_(PoolGrant.red_packet_id.is_not(None), PoolGrant.paid_at.is_not(None)))
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
