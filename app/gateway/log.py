"""The gateway event log: every WeChat exchange recorded in the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from flask import g, has_request_context
from sqlalchemy import Table, insert, select

from app.core.db import utcnow
from app.extensions import db
from app.gateway.models import GatewayEvent
from app.metrics.instruments import observe_gateway_event
from wechat.gateway_log import GatewayEvent as WireEvent

# Core, not the ORM unit of work: a log row is written once and never loaded back on the hot paths.
_INSERT = insert(cast(Table, GatewayEvent.__table__))


def _row(merchant_id: int | None, order_id: int | None, event: WireEvent) -> dict[str, Any]:
    observe_gateway_event(event)  # every exchange passes here once: the WeChat metrics count it
    return {
        "merchant_id": merchant_id,
        "order_id": order_id,
        "direction": event.direction,
        "api": event.api[:60],
        "idempotency_key": (event.idempotency_key or "")[:64] or None,
        "http_status": event.http_status,
        "wechat_code": (event.wechat_code or "")[:64] or None,
        "verified": event.verified,
        "body": event.body,
        "request_id": event.request_id or (g.get("request_id") if has_request_context() else None),
        "created_at": utcnow(),
    }


@dataclass
class RecordingHook:
    """A ``wechat.gateway_log.GatewayHook`` writing each exchange as it happens; ``order_id`` ties
    calls to an order."""

    merchant_id: int | None
    order_id: int | None = None

    def __call__(self, event: WireEvent) -> None:
        db.session.execute(_INSERT, _row(self.merchant_id, self.order_id, event))


@dataclass
class PendingLog:
    """A hook that holds exchanges until the order they concern is known (an inbound notification names
    it only inside its encrypted resource), then writes them with :meth:`write`."""

    merchant_id: int | None
    events: list[WireEvent] = field(default_factory=list)

    def __call__(self, event: WireEvent) -> None:
        self.events.append(event)

    def discard(self) -> None:
        self.events.clear()

    def rows(self, order_id: int | None = None) -> list[dict[str, Any]]:
        """The held exchanges as gateway-log rows tied to ``order_id``; they are no longer held."""
        rows = [_row(self.merchant_id, order_id, e) for e in self.events]
        self.events.clear()
        return rows

    def write(self, order_id: int | None = None) -> None:
        if rows := self.rows(order_id):
            db.session.execute(_INSERT, rows[0] if len(rows) == 1 else rows)


def events_for_order(*, merchant_id: int, order_id: int) -> list[GatewayEvent]:
    return list(
        db.session.scalars(
            select(GatewayEvent)
            .where(GatewayEvent.merchant_id == merchant_id, GatewayEvent.order_id == order_id)
            .order_by(GatewayEvent.id)
        )
    )
