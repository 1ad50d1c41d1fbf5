"""Read-only queries the pages need that no domain service offers yet (kept here, not in the domains)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, func, select, type_coerce

from app.extensions import db
from app.pools.models import PoolGrant
from app.red_packets.models import RedPacket
from app.reviews.models import ReviewItem
from app.risk.models import RiskDecision

RECONCILIATION = "reconciliation"  # the review items both reconciliations raise, one per difference


def reconciliation_differences(*, merchant_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """The differences `reconcile trades|payouts` found for the merchant, newest first."""
    rows = db.session.scalars(
        select(ReviewItem)
        .where(ReviewItem.merchant_id == merchant_id, ReviewItem.kind == RECONCILIATION)
        .order_by(ReviewItem.id.desc())
        .limit(limit)
    )
    found = []
    for item in rows:
        day, _, rest = (item.reference or "").partition(":")
        record, _, key = rest.partition(":")
        details = item.details or {}
        found.append(
            {
                "id": item.id,
                "day": day,
                "record": record,
                "key": key,
                "difference": item.reason,
                "wechat_fen": details.get("wechat_fen"),
                "hongli_fen": details.get("hongli_fen"),
                "detail": details.get("detail"),
                "status": item.status.value,
                "resolution": item.resolution,
                "created_at": item.created_at,
            }
        )
    return found


def pool_grab_totals(*, merchant_id: int) -> dict[int, tuple[int, int]]:
    """Per pool of the merchant: (grants, their fen) — one grouped read for the pools' list."""
    rows = db.session.execute(
        select(
            PoolGrant.pool_id,
            func.count(),
            func.coalesce(func.sum(type_coerce(PoolGrant.amount, BigInteger)), 0),
        )
        .where(PoolGrant.merchant_id == merchant_id)
        .group_by(PoolGrant.pool_id)
    ).all()
    return {int(pool_id): (int(n), int(fen)) for pool_id, n, fen in rows}


def pool_grants(*, pool_id: int, limit: int = 100, before: int | None = None) -> list[dict[str, Any]]:
    """A pool's grants (one per grabber), newest first, with the state of the red packet each became."""
    query = (
        select(PoolGrant, RedPacket.status)
        .outerjoin(RedPacket, RedPacket.id == PoolGrant.red_packet_id)
        .where(PoolGrant.pool_id == pool_id)
    )
    if before is not None:
        query = query.where(PoolGrant.id < before)
    return [
        {
            "id": grant.id,
            "seq": grant.seq,
            "consumer_id": grant.consumer_id,
            "amount_fen": grant.amount.fen,
            "red_packet_id": grant.red_packet_id,
            "packet_status": None if status is None else status.value,
            "paid_at": grant.paid_at,
            "via_sharer_id": grant.via_sharer_id,
            "created_at": grant.created_at,
        }
        for grant, status in db.session.execute(query.order_by(PoolGrant.id.desc()).limit(limit)).all()
    ]


def decision_scores(*, merchant_id: int, decision_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The scores the engine recorded with the given decisions (shown beside the holds they caused)."""
    if not decision_ids:
        return {}
    return {
        int(decision_id): dict(scores or {})
        for decision_id, scores in db.session.execute(
            select(RiskDecision.id, RiskDecision.scores).where(
                RiskDecision.merchant_id == merchant_id, RiskDecision.id.in_(decision_ids)
            )
        ).all()
    }
