"""Orders over HTTP: the shop registers them and reports their lifecycle; consumers view and pay them."""

from __future__ import annotations

from typing import Any

from flask import request

from app.auth.guards import (
    APPID_HEADER,
    consumer_required,
    current_consumer,
    current_merchant_id,
    shop_key_required,
    staff_required,
)
from app.auth.principals import Role
from app.core.api import Blueprint
from app.core.error_schemas import ErrorEnvelopeSchema
from app.core.tx import commit
from app.extensions import db
from app.gateway.log import events_for_order
from app.merchants.models import Merchant
from app.orders import service
from app.orders.models import Order
from app.orders.schemas import LifecycleEventSchema, OrderSchema, RegisterOrderSchema
from app.payments import refunds
from app.payments.schemas import (
    GatewayEventSchema,
    PaymentSchema,
    PayRequestSchema,
    RefundRequestSchema,
    RefundSchema,
)
from app.payments.service import confirm_payment, prepare_payment
from app.risk import current_client, remember_order_client

shop = Blueprint("shop_orders", __name__, url_prefix="/api/shop/v1", description="Orders from the shop.")
mp = Blueprint("mp_orders", __name__, url_prefix="/api/mp/v1", description="Consumers' orders and payment.")
console = Blueprint(
    "console_orders", __name__, url_prefix="/api/console/v1", description="Orders in the console."
)


def _merchant() -> Merchant:
    merchant = db.session.get(Merchant, current_merchant_id())
    assert merchant is not None
    return merchant


@shop.route("/orders", methods=["POST"])
@shop_key_required
@shop.arguments(RegisterOrderSchema)
@shop.response(201, OrderSchema)
@shop.alt_response(200, schema=OrderSchema, description="The same order registered before (same body).")
@shop.alt_response(
    409, schema=ErrorEnvelopeSchema, description="out_order_no registered with a different body."
)
def register_order(body: dict[str, Any]) -> tuple[Order, int]:
    """Register an order; idempotent on `out_order_no` (same body → same order)."""
    order, created = service.register_order(merchant=_merchant(), document=body)
    commit()
    return order, 201 if created else 200


@shop.route("/orders/<out_order_no>")
@shop_key_required
@shop.response(200, OrderSchema)
def get_order(out_order_no: str) -> Order:
    """One order, by the shop's number."""
    return service.get_order_by_out_no(merchant_id=current_merchant_id(), out_order_no=out_order_no)


@shop.route("/orders/<out_order_no>/events", methods=["POST"])
@shop_key_required
@shop.arguments(LifecycleEventSchema)
@shop.response(200, OrderSchema)
def post_event(body: dict[str, Any], out_order_no: str) -> Order:
    """Report `shipped`, `received`, `after_sale_opened` or `after_sale_closed` (replays are harmless)."""
    order = service.record_lifecycle_event(
        merchant_id=current_merchant_id(),
        out_order_no=out_order_no,
        type=body["type"],
        occurred_at=body["occurred_at"],
        after_sale_id=body.get("after_sale_id"),
    )
    commit()
    return order


@shop.route("/orders/<out_order_no>/refunds", methods=["POST"])
@shop_key_required
@shop.arguments(RefundRequestSchema)
@shop.response(202, RefundSchema)
@shop.alt_response(200, schema=RefundSchema, description="The same refund requested before.")
def request_refund(body: dict[str, Any], out_order_no: str) -> tuple[Any, int]:
    """Refund part or all of a paid order (never more than was paid); WeChat settles it asynchronously."""
    refund, created = refunds.request_refund(
        merchant_id=current_merchant_id(),
        out_order_no=out_order_no,
        out_refund_no=body["out_refund_no"],
        amount=body["amount_fen"],
        reason=body.get("reason"),
    )
    commit()
    return refund, 202 if created else 200


@shop.route("/orders/<out_order_no>/refunds")
@shop_key_required
@shop.response(200, RefundSchema(many=True))
def list_refunds(out_order_no: str) -> list[Any]:
    """The order's refunds and their states."""
    order = service.get_order_by_out_no(merchant_id=current_merchant_id(), out_order_no=out_order_no)
    return refunds.refunds_for_order(order.id)


@mp.route("/orders/<int:order_id>")
@consumer_required
@mp.response(200, OrderSchema)
def my_order(order_id: int) -> Order:
    """One of the signed-in consumer's orders."""
    principal = current_consumer()
    return service.get_consumer_order(
        merchant_id=principal.merchant_id, consumer_id=principal.consumer_id, order_id=order_id
    )


@mp.route("/orders/<int:order_id>/pay", methods=["POST"])
@consumer_required
@mp.arguments(PayRequestSchema)
@mp.response(200, PaymentSchema)
def pay(body: dict[str, Any], order_id: int) -> Any:
    """JSAPI prepay and the `wx.requestPayment` parameters; the amount is computed by the server."""
    principal = current_consumer()
    payment = prepare_payment(
        merchant=_merchant(),
        consumer_id=principal.consumer_id,
        order_id=order_id,
        appid=request.headers[APPID_HEADER],
        red_packet_id=body.get("red_packet_id"),
    )
    # Who asked to pay (IP, device): the risk decision on the order's rewards reads it at payment.
    remember_order_client(
        merchant_id=principal.merchant_id,
        consumer_id=principal.consumer_id,
        order_id=order_id,
        client=current_client(),
    )
    commit()
    return payment


@mp.route("/orders/<int:order_id>/confirm", methods=["POST"])
@consumer_required
@mp.response(200, OrderSchema)
def confirm(order_id: int) -> Order:
    """After `wx.requestPayment` succeeds: ask WeChat (order query) rather than wait for the notification."""
    principal = current_consumer()
    order = confirm_payment(merchant=_merchant(), consumer_id=principal.consumer_id, order_id=order_id)
    commit()
    return order


@console.route("/orders/<int:order_id>/gateway-events")
@staff_required(Role.FINANCE, Role.VIEWER)
@console.response(200, GatewayEventSchema(many=True))
def gateway_events(order_id: int) -> list[Any]:
    """Every WeChat exchange about this order (redacted bodies)."""
    order = db.session.get(Order, order_id)
    if order is None or order.merchant_id != current_merchant_id():
        from app.core.errors import NotFound

        raise NotFound("no such order")
    return events_for_order(merchant_id=current_merchant_id(), order_id=order_id)
