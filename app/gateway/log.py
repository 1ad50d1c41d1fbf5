"""The gateway event log: every WeChat exchange recorded in the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import g, has_request_context
from sqlalchemy import select

from app.extensions import db
from app.gateway.models import GatewayEvent
from wechat.gateway_log import GatewayEvent as WireEvent


@dataclass
class RecordingHook:
    """A ``wechat.gateway_log.GatewayHook`` writing rows; ``order_id`` ties calls to an order."""

    merchant_id: int | None
    order_id: int | None = None
    rows: list[GatewayEvent] = field(default_factory=list)

    def attach_order(self, order_id: int | None) -> None:
        """Tie what was recorded before the order was known (e.g. a notification) to ``order_id``."""
        self.order_id = order_id
        for row in self.rows:
            row.order_id = row.order_id or order_id

    def __call__(self, event: WireEvent) -> None:
        row = GatewayEvent(
            merchant_id=self.merchant_id,
            order_id=self.order_id,
            direction=event.direction,
            api=event.api[:60],
            idempotency_key=(event.idempotency_key or "")[:64] or None,
            http_status=event.http_status,
            wechat_code=(event.wechat_code or "")[:64] or None,
            verified=event.verified,
            body=event.body,
            request_id=event.request_id or (g.get("request_id") if has_request_context() else None),
        )
        self.rows.append(row)
        db.session.add(row)


def events_for_order(*, merchant_id: int, order_id: int) -> list[GatewayEvent]:
    return list(
        db.session.scalars(
            select(GatewayEvent)
            .where(GatewayEvent.merchant_id == merchant_id, GatewayEvent.order_id == order_id)
            .order_by(GatewayEvent.id)
        )
    )
