"""Emit a domain event inside the current transaction; subscribers run in that same transaction.

A fact is emitted at most once: the event row's ``dedupe_key`` is unique, so a duplicate emission
(a duplicate notification, a retried job) is refused by the database before any subscriber runs.
If the transaction rolls back, the event and everything its subscribers did roll back with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from flask import Flask, current_app
from sqlalchemy import Table

from app.core.db import insert_unless_exists, utcnow
from app.events.models import DomainEvent
from app.extensions import db

logger = logging.getLogger("hongli.events")
_SUBSCRIBERS = "hongli.event_subscribers"

ORDER_PAID = "order.paid"
ORDER_CLOSED = "order.closed"
REFUND_SUCCEEDED = "refund.succeeded"


@dataclass(frozen=True)
class Event:
    type: str
    merchant_id: int
    subject_type: str
    subject_id: int
    dedupe_key: str
    payload: dict[str, Any] = field(default_factory=dict)


Subscriber = Callable[[Event], None]


def subscribe(app: Flask, event_type: str, subscriber: Subscriber) -> None:
    """Register ``subscriber`` for ``event_type`` on ``app`` (at start-up, in ``create_app``)."""
    app.extensions.setdefault(_SUBSCRIBERS, {}).setdefault(event_type, []).append(subscriber)


def subscribers(event_type: str) -> list[Subscriber]:
    registry: dict[str, list[Subscriber]] = current_app.extensions.get(_SUBSCRIBERS, {})
    return list(registry.get(event_type, []))


_INSERT_ONCE = insert_unless_exists(
    cast(Table, DomainEvent.__table__),
    ("merchant_id", "type", "dedupe_key", "subject_type", "subject_id", "payload", "created_at"),
    key="dedupe_key",
)


def emit(event: Event) -> bool:
    """Record ``event`` and run its subscribers now; False (and nothing runs) if it was emitted before."""
    values = {
        "merchant_id": event.merchant_id,
        "type": event.type,
        "dedupe_key": event.dedupe_key,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "payload": event.payload,
        "created_at": utcnow(),
    }
    # One round trip: the unique key decides, without a read first or a savepoint.
    if db.session.execute(_INSERT_ONCE, values).scalar() is None:
        return False
    for subscriber in subscribers(event.type):
        subscriber(event)
    logger.info("event %s %s", event.type, event.dedupe_key, extra={"event_type": event.type})
    return True
