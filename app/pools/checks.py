"""Ledger checks of pools (run by ``flask ledger check``): shares sum to the total, the pool's own
entries net to what it still holds, and no consumer or share is granted twice."""

from __future__ import annotations

from sqlalchemy import func, select

from app.extensions import db
from app.ledger.checks import register_check
from app.pools.models import Pool, PoolGrant, PoolShare
from app.pools.reconcile import ledger_problems


def pools_agree_with_ledger() -> list[str]:
    problems: list[str] = []
    for pool in db.session.scalars(select(Pool).order_by(Pool.id)):
        problems.extend(ledger_problems(pool))
    return problems[:20]


def pool_grants_match_shares() -> list[str]:
    """Each grant is the amount of its share."""
    rows = db.session.execute(
        select(PoolGrant.pool_id, PoolGrant.seq)
        .join(
            PoolShare,
            (PoolShare.pool_id == PoolGrant.pool_id) & (PoolShare.seq == PoolGrant.seq),
            isouter=True,
        )
        .where((PoolShare.id.is_(None)) | (PoolShare.amount != PoolGrant.amount))
        .limit(20)
    ).all()
    over = db.session.execute(
        select(Pool.id)
        .join(PoolGrant, PoolGrant.pool_id == Pool.id)
        .group_by(Pool.id, Pool.count)
        .having(func.count() > Pool.count)
    ).all()
    return [f"pool {p} grant of share {s} does not match its share" for p, s in rows] + [
        f"pool {p}: more grants than shares" for (p,) in over
    ]


def register() -> None:
    register_check("pools_agree_with_ledger", pools_agree_with_ledger)
    register_check("pool_grants_match_shares", pool_grants_match_shares)
