"""Raise a review item (inside the caller's transaction)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.reviews.models import ReviewItem, ReviewStatus


def flag_for_review(
    *,
    merchant_id: int | None,
    kind: str,
    reason: str,
    reference: str | None = None,
    details: dict[str, Any] | None = None,
) -> ReviewItem:
    """One open item per (kind, reference): WeChat's retries of a refused callback do not pile up."""
    if reference:
        existing = db.session.scalar(
            select(ReviewItem).where(
                ReviewItem.kind == kind,
                ReviewItem.reference == reference[:120],
                ReviewItem.status == ReviewStatus.OPEN,
            )
        )
        if existing is not None:
            return existing
    item = ReviewItem(
        merchant_id=merchant_id,
        kind=kind,
        reason=reason[:255],
        reference=(reference or "")[:120] or None,
        details=details or {},
    )
    db.session.add(item)
    return item
