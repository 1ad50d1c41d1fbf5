"""Read-only queries the pages need that no domain service offers yet (kept here, not in the domains)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.reviews.models import ReviewItem

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
