"""``/api/mp/v1/withdrawals`` (consumers) and ``/api/console/v1/withdrawals`` (finance review)."""

from __future__ import annotations

from typing import Any

from app.audit.service import Actor
from app.auth.guards import (
    consumer_required,
    current_consumer,
    current_merchant_id,
    current_staff,
    staff_required,
)
from app.auth.principals import Role
from app.core.api import Blueprint
from app.core.tx import commit
from app.withdrawals import service
from app.withdrawals.schemas import (
    ConsoleQuerySchema,
    RejectSchema,
    WithdrawalRequestSchema,
    WithdrawalSchema,
)

mp = Blueprint("mp_withdrawals", __name__, url_prefix="/api/mp/v1/withdrawals", description="Withdrawals.")
console = Blueprint(
    "console_withdrawals",
    __name__,
    url_prefix="/api/console/v1/withdrawals",
    description="Withdrawal review (finance).",
)


@mp.route("", methods=["POST"])
@consumer_required
@mp.arguments(WithdrawalRequestSchema)
@mp.response(201, WithdrawalSchema)
def request_withdrawal(body: dict[str, Any]) -> dict[str, Any]:
    """Withdraw available money (after repaying any debt); the same ``idempotency_key`` returns the same one."""
    principal = current_consumer()
    withdrawal, _created = service.request_withdrawal(
        merchant_id=principal.merchant_id, consumer_id=principal.consumer_id, appid=principal.appid, **body
    )
    commit()
    return service.view_of(withdrawal)


@mp.route("")
@consumer_required
@mp.response(200, WithdrawalSchema(many=True))
def list_mine() -> list[dict[str, Any]]:
    """The consumer's withdrawals, newest first, each with its state history."""
    principal = current_consumer()
    return service.withdrawals_of(merchant_id=principal.merchant_id, consumer_id=principal.consumer_id)


@mp.route("/<int:withdrawal_id>")
@consumer_required
@mp.response(200, WithdrawalSchema)
def get_mine(withdrawal_id: int) -> dict[str, Any]:
    """One withdrawal; while a transfer awaits confirmation, ``confirm`` carries ``package_info``."""
    principal = current_consumer()
    return service.withdrawal_of(
        merchant_id=principal.merchant_id, consumer_id=principal.consumer_id, withdrawal_id=withdrawal_id
    )


def _actor() -> Actor:
    return Actor("staff", str(current_staff().staff_id))


@console.route("")
@staff_required(Role.FINANCE)
@console.arguments(ConsoleQuerySchema, location="query")
@console.response(200, WithdrawalSchema(many=True))
def list_withdrawals(args: dict[str, Any]) -> list[dict[str, Any]]:
    """This merchant's withdrawals, optionally by ``status`` (e.g. ``pending_review``)."""
    return service.list_for_console(merchant_id=current_merchant_id(), status=args["status"])


@console.route("/<int:withdrawal_id>/approve", methods=["POST"])
@staff_required(Role.FINANCE, while_suspended=True)
@console.response(200, WithdrawalSchema)
def approve(withdrawal_id: int) -> dict[str, Any]:
    """Approve a withdrawal under review: its payout is queued. Audited."""
    withdrawal = service.approve_withdrawal(
        merchant_id=current_merchant_id(),
        withdrawal_id=withdrawal_id,
        staff_id=current_staff().staff_id,
        actor=_actor(),
    )
    commit()
    return service.view_of(withdrawal)


@console.route("/<int:withdrawal_id>/reject", methods=["POST"])
@staff_required(Role.FINANCE, while_suspended=True)
@console.arguments(RejectSchema)
@console.response(200, WithdrawalSchema)
def reject(body: dict[str, Any], withdrawal_id: int) -> dict[str, Any]:
    """Reject a withdrawal under review with a reason the consumer sees; the money returns. Audited."""
    withdrawal = service.reject_withdrawal(
        merchant_id=current_merchant_id(),
        withdrawal_id=withdrawal_id,
        reason=body["reason"],
        staff_id=current_staff().staff_id,
        actor=_actor(),
    )
    commit()
    return service.view_of(withdrawal)
