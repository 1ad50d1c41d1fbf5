"""``/api/console/v1/payouts``: finance sees every payout by state (and the stuck ones), re-queues one, or
marks one resolved after checking WeChat's records; both actions are audited."""

from __future__ import annotations

from typing import Any

from app.audit.service import Actor
from app.auth.guards import current_merchant_id, current_staff, staff_required
from app.auth.principals import Role
from app.core.api import Blueprint
from app.core.errors import NotFound
from app.core.tx import commit
from app.payouts import operations, service
from app.payouts.capabilities import ask_again
from app.payouts.capabilities import capabilities as payout_capabilities
from app.payouts.models import Payout, PayoutProduct, PayoutStatus
from app.payouts.schemas import (
    STUCK,
    PayoutCapabilitySchema,
    PayoutQuerySchema,
    PayoutSchema,
    ResolveSchema,
)

blp = Blueprint(
    "console_payouts", __name__, url_prefix="/api/console/v1/payouts", description="Payouts (finance)."
)


def _actor() -> Actor:
    return Actor("staff", str(current_staff().staff_id))


@blp.route("")
@staff_required(Role.FINANCE)
@blp.arguments(PayoutQuerySchema, location="query")
@blp.response(200, PayoutSchema(many=True))
def list_payouts(args: dict[str, Any]) -> list[Payout]:
    """This merchant's payouts, newest first; ``status`` (repeatable) filters, e.g. ``unknown``, or
    ``stuck``: submitting/unknown for longer than the configured query deadline."""
    if STUCK in args["status"]:
        return operations.stuck_payouts(merchant_id=current_merchant_id())
    statuses = [PayoutStatus(s) for s in args["status"]]
    return service.list_payouts(merchant_id=current_merchant_id(), statuses=statuses)


@blp.route("/capabilities")
@staff_required()
@blp.response(200, PayoutCapabilitySchema(many=True))
def capabilities() -> list[dict[str, Any]]:
    """Which payout products the merchant's WeChat Pay account has, as WeChat last answered (cash red
    packets off after ``NO_AUTH`` / ``PRODUCT_AUTHORITY_UNOPEN``, with the reason). Any role."""
    return payout_capabilities(current_merchant_id())


@blp.route("/capabilities/<product>/ask-again", methods=["POST"])
@staff_required(Role.FINANCE)
@blp.response(200, PayoutCapabilitySchema(many=True))
def capability_ask_again(product: str) -> list[dict[str, Any]]:
    """The merchant opened the product at WeChat Pay since it was refused: the next send asks WeChat
    again (a refusal switches it off again and falls back to 商家转账). 409 ``capability_not_off`` if
    WeChat has not refused it. Finance; audited."""
    if product not in {p.value for p in PayoutProduct}:
        raise NotFound("no such payout product", details={"product": product[:40]})
    ask_again(current_merchant_id(), PayoutProduct(product), actor=_actor())
    commit()
    return payout_capabilities(current_merchant_id())


@blp.route("/<int:payout_id>/retry", methods=["POST"])
@staff_required(Role.FINANCE, while_suspended=True)
@blp.response(200, PayoutSchema)
def retry(payout_id: int) -> Payout:
    """Queue a pass now for an unfinished payout (an unknown one is queried with its same number first)."""
    payout = operations.retry_payout(merchant_id=current_merchant_id(), payout_id=payout_id, actor=_actor())
    commit()
    return payout


@blp.route("/<int:payout_id>/resolve", methods=["POST"])
@staff_required(Role.FINANCE, while_suspended=True)
@blp.arguments(ResolveSchema)
@blp.response(200, PayoutSchema)
def resolve(body: dict[str, Any], payout_id: int) -> Payout:
    """Mark a sent payout ``succeeded`` or ``failed`` after checking WeChat; 409 if WeChat says otherwise."""
    resolution = operations.resolve_payout(
        merchant_id=current_merchant_id(),
        payout_id=payout_id,
        outcome=body["outcome"],
        reason=body["reason"],
        actor=_actor(),
    )
    commit()
    return resolution.payout
