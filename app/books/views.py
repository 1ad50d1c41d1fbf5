"""``/api/console/v1/money``, ``…/budget/deposits``, ``…/orders`` and ``…/consumers``: the merchant's books.

Every role reads them (a viewer included); only finance (and the owner, who holds every role) records a
deposit into the marketing budget, as for funding a campaign.
"""

from __future__ import annotations

from typing import Any

from app.auth.guards import current_actor, current_merchant_id, staff_required
from app.auth.principals import Role
from app.books import service
from app.books.schemas import (
    ConsumerDetailSchema,
    ConsumerPageSchema,
    ConsumerQuerySchema,
    DepositRequestSchema,
    DepositSchema,
    MerchantMoneySchema,
    OrderDetailSchema,
    OrderPageSchema,
    OrderQuerySchema,
)
from app.core.api import Blueprint
from app.core.tx import commit

blp = Blueprint(
    "console_books",
    __name__,
    url_prefix="/api/console/v1",
    description="The merchant's books: money from the ledger, orders, consumers and wallets; deposits.",
)


@blp.route("/money")
@staff_required()
@blp.response(200, MerchantMoneySchema)
def money() -> dict[str, Any]:
    """Budget (unallocated), merchant rebate earnings by reason, and each campaign's budget, reserved,
    funded, spent and skip counts — every figure from the ledger. Any role."""
    return service.merchant_money(merchant_id=current_merchant_id())


@blp.route("/budget/deposits", methods=["POST"])
@staff_required(Role.FINANCE)
@blp.arguments(DepositRequestSchema)
@blp.response(201, DepositSchema)
@blp.alt_response(200, schema=DepositSchema, description="A replay: the deposit recorded before.")
def deposit(body: dict[str, Any]) -> tuple[service.Deposit, int]:
    """Record money the merchant paid in (e.g. a bank transfer) into its marketing budget: the same
    ledger entry as ``budgets deposit``. Idempotent on ``idempotency_key`` (200 and the same deposit on a
    replay, 409 for another amount); audited once. Finance or owner."""
    done = service.deposit_merchant_budget(
        merchant_id=current_merchant_id(),
        amount=body["amount_fen"],
        idempotency_key=body["idempotency_key"],
        actor=current_actor(),
    )
    commit()
    return done, 200 if done.replayed else 201


@blp.route("/orders")
@staff_required()
@blp.arguments(OrderQuerySchema, location="query")
@blp.response(200, OrderPageSchema)
def orders(args: dict[str, Any]) -> dict[str, Any]:
    """The merchant's orders, newest first; pass ``next_before`` as ``before`` for the next page. Any role."""
    rows, next_before = service.list_orders(merchant_id=current_merchant_id(), **args)
    return {"orders": rows, "next_before": next_before}


@blp.route("/orders/<int:order_id>")
@staff_required()
@blp.response(200, OrderDetailSchema)
def order(order_id: int) -> dict[str, Any]:
    """An order with its payment attempts, the red packet spent on it, rebate grants and refunds. Any role."""
    return service.order_detail(merchant_id=current_merchant_id(), order_id=order_id)


@blp.route("/consumers")
@staff_required()
@blp.arguments(ConsumerQuerySchema, location="query")
@blp.response(200, ConsumerPageSchema)
def consumers(args: dict[str, Any]) -> dict[str, Any]:
    """The merchant's consumers, newest first, optionally matching ``q``; paged like orders. Any role."""
    rows, next_before = service.list_consumers(merchant_id=current_merchant_id(), **args)
    return {"consumers": rows, "next_before": next_before}


@blp.route("/consumers/<int:consumer_id>")
@staff_required()
@blp.response(200, ConsumerDetailSchema)
def consumer(consumer_id: int) -> dict[str, Any]:
    """A consumer with their wallet buckets (from the ledger) and withdrawals. Any role."""
    return service.consumer_detail(merchant_id=current_merchant_id(), consumer_id=consumer_id)
