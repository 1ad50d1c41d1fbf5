"""Coupons over HTTP: the console's stocks and metrics, the consumer's coupons, WeChat's coupon callbacks.

Console roles as for campaigns: any role reads; an operator (or the owner) creates and changes stocks and
issues coupons. WeChat's ``/wechat/<merchant>/coupons/notify`` is public: the signature is the check.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint as FlaskBlueprint
from flask import Response, jsonify, request

from app.audit.service import record_audit
from app.auth.guards import (
    consumer_required,
    current_actor,
    current_consumer,
    current_merchant_id,
    public,
    staff_required,
)
from app.auth.principals import Role
from app.core.api import Blueprint
from app.core.tx import commit
from app.coupons import merchant_coupons, metrics, service
from app.coupons.listing import find_coupons
from app.coupons.models import Channel, Coupon, CouponKind, CouponStatus, CouponStock, StockStatus
from app.coupons.redemption import handle_coupon_notification
from app.coupons.schemas import (
    AppliedSchema,
    ApplySchema,
    CapabilitySchema,
    ConsoleCouponSchema,
    CouponQuerySchema,
    CouponSchema,
    IssueSchema,
    PluginParamsSchema,
    PluginRequestSchema,
    PushResultSchema,
    PushSchema,
    RevokeSchema,
    StockActionSchema,
    StockCreateSchema,
    StockMetricsSchema,
    StockSchema,
    TaskProgressSchema,
    WeChatSizeSchema,
)
from app.risk import check_claim

console = Blueprint(
    "console_coupons",
    __name__,
    url_prefix="/api/console/v1",
    description="WeChat Pay coupon stocks (vouchers, merchant coupons), issuance and their metrics.",
)
mp = Blueprint(
    "mp_coupons", __name__, url_prefix="/api/mp/v1", description="The consumer's WeChat Pay coupons."
)
notify = FlaskBlueprint("wechat_coupon_notify", __name__, url_prefix="/wechat")


# ---------------------------------------------------------------- console


@console.route("/coupon-stocks")
@staff_required()
@console.response(200, StockSchema(many=True))
def stocks() -> list[CouponStock]:
    """Every coupon stock of the merchant, with our size, WeChat's (when smaller) and what issues. Any role."""
    return service.list_stocks(merchant_id=current_merchant_id())


@console.route("/coupon-stocks", methods=["POST"])
@staff_required(Role.OPERATOR)
@console.arguments(StockCreateSchema)
@console.response(201, StockSchema)
def create_stock(body: dict[str, Any]) -> tuple[CouponStock, int]:
    """Create a stock of a campaign at WeChat and start it. ``kind`` voucher (代金券, every merchant) or
    merchant_coupon (商家券, accounts that have it: 409 ``coupon_capability_off`` once WeChat said
    ``NO_AUTH``). With ``rule_id`` its coupons carry that two-way rule's legs. Operator or owner."""
    merchant_id = current_merchant_id()
    stock = service.create_stock(
        merchant_id=merchant_id,
        campaign_id=body["campaign_id"],
        kind=CouponKind(body["kind"]),
        name=body["name"],
        face_value=body["face_value_fen"],
        min_spend=body["min_spend_fen"],
        valid_from=body["valid_from"],
        valid_until=body["valid_until"],
        max_coupons=body["max_coupons"],
        channels=body["channels"],
        no_cash=body["no_cash"],
        rule_id=body["rule_id"],
        scope=body["scope"],
        activate=body["activate"],
        task=body["task"],
    )
    record_audit(
        actor=current_actor(),
        action="coupon_stock.create",
        target_type="coupon_stock",
        target_id=stock.id,
        merchant_id=merchant_id,
        after={"kind": stock.kind.value, "max_coupons": stock.max_coupons, "status": stock.status.value},
    )
    commit()
    return stock, 201


@console.route("/coupon-stocks/<int:stock_id>")
@staff_required()
@console.response(200, StockSchema)
def stock(stock_id: int) -> CouponStock:
    """One stock. Any role."""
    return service.get_stock(merchant_id=current_merchant_id(), stock_id=stock_id)


@console.route("/coupon-stocks/<int:stock_id>/status", methods=["POST"])
@staff_required(Role.OPERATOR)
@console.arguments(StockActionSchema)
@console.response(200, StockSchema)
def change(body: dict[str, Any], stock_id: int) -> CouponStock:
    """Start, pause, restart (``running``) or stop a stock, at WeChat first. Operator or owner."""
    merchant_id = current_merchant_id()
    changed = service.change_stock(merchant_id=merchant_id, stock_id=stock_id, to=StockStatus(body["status"]))
    record_audit(
        actor=current_actor(),
        action="coupon_stock.status",
        target_type="coupon_stock",
        target_id=stock_id,
        merchant_id=merchant_id,
        after={"status": changed.status.value},
    )
    commit()
    return changed


@console.route("/coupon-stocks/<int:stock_id>/submit", methods=["POST"])
@staff_required(Role.OPERATOR)
@console.response(200, StockSchema)
def submit(stock_id: int) -> CouponStock:
    """Send a draft stock to WeChat again (same ``out_request_no``) after an unknown outcome. Operator."""
    submitted = service.submit_stock(merchant_id=current_merchant_id(), stock_id=stock_id)
    commit()
    return submitted


@console.route("/coupon-stocks/<int:stock_id>/wechat-size", methods=["POST"])
@staff_required(Role.OPERATOR)
@console.arguments(WeChatSizeSchema)
@console.response(200, StockSchema)
def wechat_size(body: dict[str, Any], stock_id: int) -> CouponStock:
    """Record WeChat's size of the stock when it is smaller than ours (given, or read from WeChat): the
    smaller issues, the difference is reported. Operator or owner."""
    changed = service.link_wechat_size(
        merchant_id=current_merchant_id(), stock_id=stock_id, wechat_max_coupons=body["wechat_max_coupons"]
    )
    commit()
    return changed


@console.route("/coupon-stocks/<int:stock_id>/coupons", methods=["POST"])
@staff_required(Role.OPERATOR)
@console.arguments(IssueSchema)
@console.response(201, ConsoleCouponSchema)
def issue(body: dict[str, Any], stock_id: int) -> tuple[Coupon, int]:
    """Issue one coupon to a consumer (a voucher is then sent to their card pack). Idempotent on
    ``idempotency_key``; 409 ``coupon_stock_exhausted`` / ``coupon_budget_exhausted``. Operator."""
    coupon = service.issue_coupon(
        merchant_id=current_merchant_id(),
        stock_id=stock_id,
        consumer_id=body["consumer_id"],
        channel=Channel.DIRECT,
        issue_key=f"direct:{stock_id}:{body['idempotency_key']}",
    )
    commit()
    return coupon, 201


@console.route("/coupon-stocks/<int:stock_id>/push", methods=["POST"])
@staff_required(Role.OPERATOR)
@console.arguments(PushSchema)
@console.response(200, PushResultSchema)
def push(body: dict[str, Any], stock_id: int) -> dict[str, Any]:
    """A campaign push: one coupon to every consumer who paid at least ``min_paid_fen`` in the last
    ``days`` days, until the stock or the budget says no (once per consumer). Operator or owner."""
    result = service.push_to_segment(
        merchant_id=current_merchant_id(),
        stock_id=stock_id,
        min_paid_fen=body["min_paid_fen"].fen,
        days=body["days"],
    )
    commit()
    return result


@console.route("/coupon-stocks/<int:stock_id>/coupons")
@staff_required()
@console.arguments(CouponQuerySchema, location="query")
@console.response(200, ConsoleCouponSchema(many=True))
def stock_coupons(query: dict[str, Any], stock_id: int) -> list[Coupon]:
    """The stock's coupons, newest first (at most ``limit``, default 500), by state, consumer or coupon
    number; the next page with ``before`` = the last id seen. Any role."""
    rows, _ = find_coupons(
        merchant_id=current_merchant_id(),
        stock_id=stock_id,
        status=CouponStatus(query["status"]) if query["status"] else None,
        consumer_id=query["consumer_id"],
        number=query["q"],
        before=query["before"],
        limit=query["limit"],
    )
    return rows


@console.route("/coupons/capabilities")
@staff_required()
@console.response(200, CapabilitySchema(many=True))
def capabilities() -> list[dict[str, Any]]:
    """Which coupon products the merchant's WeChat Pay account has, as WeChat last answered. Any role."""
    return service.capabilities(current_merchant_id())


@console.route("/coupons/capabilities/<kind>/ask-again", methods=["POST"])
@staff_required(Role.OPERATOR)
@console.response(200, CapabilitySchema(many=True))
def capability_ask_again(kind: str) -> list[dict[str, Any]]:
    """The merchant opened the product at WeChat Pay since it was refused: the next call asks WeChat
    again (a refusal switches it off again). 409 ``capability_not_off`` if WeChat has not refused it.
    Operators; audited."""
    service.ask_capability_again(current_merchant_id(), service.coupon_kind(kind), actor=current_actor())
    commit()
    return service.capabilities(current_merchant_id())


@console.route("/coupons/metrics")
@staff_required()
@console.response(200, StockMetricsSchema(many=True))
def coupon_metrics() -> list[dict[str, Any]]:
    """Per stock and channel: issued, claimed, redeemed, redemption rate, time to redeem, GMV driven and
    cost (net of refunds, from the ledger's grants). Any role."""
    return metrics.stock_metrics(merchant_id=current_merchant_id())


# ---------------------------------------------------------------- consumer


@mp.route("/coupons")
@consumer_required
@mp.response(200, CouponSchema(many=True))
def my_coupons() -> list[Coupon]:
    """The signed-in consumer's coupons."""
    principal = current_consumer()
    return service.coupons_of(merchant_id=principal.merchant_id, consumer_id=principal.consumer_id)


def _claimed(coupon_id: int) -> None:
    """A coupon the signed-in consumer just claimed: the risk engine's say (a refusal undoes the claim and
    answers 429 / 403), then commit."""
    principal = current_consumer()
    check_claim(
        merchant_id=principal.merchant_id,
        consumer_id=principal.consumer_id,
        kind="coupon",
        reference=f"coupon:{coupon_id}",
    )
    commit()


@mp.route("/orders/<int:order_id>/coupon", methods=["POST"])
@consumer_required
@mp.response(201, CouponSchema)
def after_payment(order_id: int) -> tuple[Coupon, int]:
    """ "A coupon for this order?": a voucher of a running after-payment stock for a paid order (once)."""
    principal = current_consumer()
    coupon = service.issue_after_payment(
        merchant_id=principal.merchant_id, consumer_id=principal.consumer_id, order_id=order_id
    )
    _claimed(coupon.id)
    return coupon, 201


@mp.route("/coupons/first-visit", methods=["POST"])
@consumer_required
@mp.response(201, CouponSchema)
def first_visit() -> tuple[Coupon, int]:
    """A new customer's welcome voucher (a running ``first_visit`` stock), asked on the mini-program's first
    visit: refused (409 ``not_a_new_customer``) once they have paid here; asking again returns the same."""
    principal = current_consumer()
    coupon = service.issue_on_first_visit(
        merchant_id=principal.merchant_id, consumer_id=principal.consumer_id
    )
    _claimed(coupon.id)
    return coupon, 201


@mp.route("/coupons/tasks")
@consumer_required
@mp.response(200, TaskProgressSchema(many=True))
def tasks() -> list[dict[str, Any]]:
    """The running task stocks (browse / add to cart / share N times within D days) and the consumer's progress,
    counted from their own behaviour events (``POST /api/mp/v1/events``)."""
    principal = current_consumer()
    return service.task_progress(merchant_id=principal.merchant_id, consumer_id=principal.consumer_id)


@mp.route("/coupons/tasks/<int:stock_id>", methods=["POST"])
@consumer_required
@mp.response(201, CouponSchema)
def claim_task(stock_id: int) -> tuple[Coupon, int]:
    """The task's voucher, once the task is done (409 ``task_not_done`` with the progress); once each."""
    principal = current_consumer()
    coupon = service.claim_task_coupon(
        merchant_id=principal.merchant_id, consumer_id=principal.consumer_id, stock_id=stock_id
    )
    _claimed(coupon.id)
    return coupon, 201


@mp.route("/coupons/plugin", methods=["POST"])
@consumer_required
@mp.arguments(PluginRequestSchema)
@mp.response(200, PluginParamsSchema)
def plugin(body: dict[str, Any]) -> dict[str, Any]:
    """A merchant coupon offered to the consumer: the signed parameters of the mini-program
    ``<send-coupon>`` plugin (our code, reserved now; WeChat's COUPON.SEND binds it)."""
    principal = current_consumer()
    params = service.plugin_params(
        merchant_id=principal.merchant_id,
        consumer_id=principal.consumer_id,
        stock_id=body["stock_id"],
        coupon_id=body["coupon_id"],
    )
    _claimed(params["coupon_id"])
    return params


@mp.route("/coupons/<int:coupon_id>/apply", methods=["POST"])
@consumer_required
@mp.arguments(ApplySchema)
@mp.response(200, AppliedSchema)
def apply(body: dict[str, Any], coupon_id: int) -> dict[str, Any]:
    """Apply a claimed merchant coupon (商家券) to an unpaid order: our pricing checks its minimum, scope
    and validity and holds it for the order; the next ``/orders/{id}/pay`` asks WeChat for the lower
    amount, and the coupon is used (reported to WeChat) when the order is paid."""
    principal = current_consumer()
    priced = merchant_coupons.apply_to_order(
        merchant_id=principal.merchant_id,
        consumer_id=principal.consumer_id,
        coupon_id=coupon_id,
        order_id=body["order_id"],
    )
    commit()
    return priced


@console.route("/coupons/<int:coupon_id>/revoke", methods=["POST"])
@staff_required(Role.OPERATOR)
@console.arguments(RevokeSchema)
@console.response(200, ConsoleCouponSchema)
def revoke(body: dict[str, Any], coupon_id: int) -> Coupon:
    """Revoke a live merchant coupon: its reservation back to the budget now, 使券失效 at WeChat after
    commit. Operator or owner."""
    merchant_id = current_merchant_id()
    coupon = merchant_coupons.revoke(merchant_id=merchant_id, coupon_id=coupon_id, reason=body["reason"])
    record_audit(
        actor=current_actor(),
        action="coupon.revoke",
        target_type="coupon",
        target_id=coupon_id,
        merchant_id=merchant_id,
        after={"status": coupon.status.value, "reason": body["reason"]},
    )
    commit()
    return coupon


# ---------------------------------------------------------------- WeChat


@notify.post("/<slug>/coupons/notify")
@public
def coupon_notify(slug: str) -> Response | tuple[Response, int]:
    """COUPON.USE / COUPON.SEND: 204 when applied, a repeat or ignored; 4xx (WeChat retries) when refused."""
    answer = handle_coupon_notification(
        slug=slug, headers=dict(request.headers.items()), body=request.get_data()
    )
    commit()
    if answer.ok:
        return Response(status=204)
    return jsonify({"code": "FAIL", "message": answer.message}), answer.status
