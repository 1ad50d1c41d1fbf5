"""Registering orders from the shop (idempotent on ``out_order_no``) and their lifecycle events."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.consumers.models import AppKind, Consumer, WeChatIdentity
from app.core.db import utcnow
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.money import Money
from app.extensions import db
from app.merchants.models import Merchant
from app.orders.models import Order, OrderStatus


def _digest(document: dict[str, Any]) -> str:
    def plain(value: Any) -> Any:
        if isinstance(value, Money):
            return value.fen
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    canonical = json.dumps(plain(document), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _consumer_for(merchant: Merchant, ref: dict[str, Any]) -> Consumer:
    if ref.get("id") is not None:
        consumer = db.session.get(Consumer, ref["id"])
        if consumer is None or consumer.merchant_id != merchant.id:
            raise InvalidInput("unknown consumer", details={"fields": {"consumer": {"id": ["unknown"]}}})
        return consumer
    openid = ref["openid"]
    appids = [a for a in (merchant.mp_appid, merchant.oa_appid) if a]
    identity = db.session.scalar(
        select(WeChatIdentity).where(WeChatIdentity.appid.in_(appids), WeChatIdentity.openid == openid)
    )
    if identity is not None:
        consumer = db.session.get(Consumer, identity.consumer_id)
        assert consumer is not None
        return consumer
    if not merchant.mp_appid:
        raise InvalidInput("unknown consumer", details={"fields": {"consumer": {"openid": ["unknown"]}}})
    # A buyer the shop knows before they ever signed in to Hongli: they log in later under this openid.
    consumer = Consumer(merchant_id=merchant.id)
    db.session.add(consumer)
    db.session.flush()
    db.session.add(
        WeChatIdentity(
            merchant_id=merchant.id,
            consumer_id=consumer.id,
            app_kind=AppKind.MINIPROGRAM,
            appid=merchant.mp_appid,
            openid=openid,
        )
    )
    return consumer


def register_order(*, merchant: Merchant, document: dict[str, Any]) -> tuple[Order, bool]:
    """Create the order once; the same body again returns it (created=False), another body is a 409."""
    digest = _digest(document)
    existing = db.session.scalar(
        select(Order).where(Order.merchant_id == merchant.id, Order.out_order_no == document["out_order_no"])
    )
    if existing is not None:
        return _same_or_conflict(existing, digest), False
    consumer = _consumer_for(merchant, document["consumer"])
    items = [
        {
            "sku": item["sku"],
            "name": item["name"],
            "category": item.get("category"),
            "quantity": item["quantity"],
            "unit_price_fen": item["unit_price_fen"].fen,
        }
        for item in document["items"]
    ]
    description = items[0]["name"] if len(items) == 1 else f"{items[0]['name']} and {len(items) - 1} more"
    order = Order(
        merchant_id=merchant.id,
        consumer_id=consumer.id,
        out_order_no=document["out_order_no"],
        request_digest=digest,
        total=document["total_fen"],
        shipping=document.get("shipping_fen") or Money(0),
        items=items,
        description=description[:127],
        promoter_code=document.get("promoter_code"),
        open_after_sale_ids=[],
    )
    try:
        with db.session.begin_nested():
            db.session.add(order)
    except IntegrityError:
        # The same order registered concurrently: answer like a retry.
        raced = db.session.scalar(
            select(Order).where(
                Order.merchant_id == merchant.id, Order.out_order_no == document["out_order_no"]
            )
        )
        assert raced is not None
        return _same_or_conflict(raced, digest), False
    return order, True


def _same_or_conflict(order: Order, digest: str) -> Order:
    if order.request_digest != digest:
        raise Conflict(
            "an order with this out_order_no was registered with a different body",
            details={"out_order_no": order.out_order_no},
        )
    return order


def get_order_by_out_no(*, merchant_id: int, out_order_no: str, lock: bool = False) -> Order:
    # ``lock`` makes a PostgreSQL caller queue behind others changing the order; it is no guard (SQLite
    # drops FOR UPDATE and serialises whole transactions instead): each change to the order is a
    # conditional UPDATE or a unique constraint in its service (see docs/operations.md, Concurrency).
    query = select(Order).where(Order.merchant_id == merchant_id, Order.out_order_no == out_order_no)
    order = db.session.scalar(query.with_for_update() if lock else query)
    if order is None:
        raise NotFound("no such order")
    return order


def get_consumer_order(*, merchant_id: int, consumer_id: int, order_id: int, lock: bool = False) -> Order:
    """The order ``order_id`` if it belongs to this consumer at this merchant (else 404, never a leak).

    ``lock`` only queues PostgreSQL callers (see :func:`get_order_by_out_no`)."""
    query = select(Order).where(
        Order.id == order_id, Order.merchant_id == merchant_id, Order.consumer_id == consumer_id
    )
    order = db.session.scalar(query.with_for_update() if lock else query)
    if order is None:
        raise NotFound("no such order")
    return order


def record_lifecycle_event(
    *, merchant_id: int, out_order_no: str, type: str, occurred_at: datetime, after_sale_id: str | None
) -> Order:
    """Apply a shop event. Replays are harmless: each fact is set once, after-sales are keyed by id."""
    order = get_order_by_out_no(merchant_id=merchant_id, out_order_no=out_order_no, lock=True)
    if order.status is not OrderStatus.PAID:
        raise Conflict(
            f"order is {order.status.value}; lifecycle events need a paid order",
            details={"status": order.status.value},
        )
    if occurred_at > utcnow():
        raise InvalidInput(
            "occurred_at is in the future", details={"fields": {"occurred_at": ["in the future"]}}
        )
    if type == "shipped":
        order.shipped_at = order.shipped_at or occurred_at
    elif type == "received":
        order.received_at = order.received_at or occurred_at
        order.shipped_at = order.shipped_at or occurred_at
    elif type == "after_sale_opened":
        assert after_sale_id is not None
        if after_sale_id not in order.open_after_sale_ids:
            order.open_after_sale_ids = [*order.open_after_sale_ids, after_sale_id]
    elif type == "after_sale_closed":
        assert after_sale_id is not None
        if after_sale_id in order.open_after_sale_ids:
            order.open_after_sale_ids = [i for i in order.open_after_sale_ids if i != after_sale_id]
            order.last_after_sale_closed_at = occurred_at
    return order
