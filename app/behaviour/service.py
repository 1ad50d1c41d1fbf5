"""Record a batch of a consumer's browsing events (attributed to them, never to another)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from app.behaviour.models import BehaviourEvent, BehaviourKind
from app.core.db import utcnow
from app.core.errors import InvalidInput
from app.extensions import db
from app.risk import note_trail

# Client clocks drift; events claiming to be from the future or from long ago are refused.
MAX_SKEW = timedelta(minutes=10)
MAX_AGE = timedelta(days=7)


def record_events(*, merchant_id: int, consumer_id: int, events: list[dict[str, Any]], ip: str | None) -> int:
    now = utcnow()
    bad = [i for i, e in enumerate(events) if not now - MAX_AGE <= e["occurred_at"] <= now + MAX_SKEW]
    if bad:
        raise InvalidInput(
            "occurred_at out of range (more than 7 days old or in the future)",
            details={"fields": {"events": {str(i): {"occurred_at": ["out of range"]} for i in bad}}},
        )
    db.session.add_all(
        BehaviourEvent(
            merchant_id=merchant_id,
            consumer_id=consumer_id,
            kind=e["type"],
            sku=e.get("sku"),
            page=e.get("page"),
            occurred_at=e["occurred_at"],
            received_at=now,
            ip=ip,
        )
        for e in events
    )
    # The fake-order signal reads browse/cart trails from Redis (app.risk); shares are no trail.
    note_trail(
        merchant_id=merchant_id,
        consumer_id=consumer_id,
        moments=[e["occurred_at"] for e in events if e["type"] in (BehaviourKind.VIEW, BehaviourKind.CART)],
    )
    return len(events)
