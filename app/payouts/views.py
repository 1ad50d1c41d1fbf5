"""``/api/console/v1/payouts``: finance sees every payout by state, including the ones still unresolved."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from app.auth.guards import current_merchant_id, staff_required
from app.auth.principals import Role
from app.payouts import service
from app.payouts.models import Payout
from app.payouts.schemas import PayoutQuerySchema, PayoutSchema

blp = Blueprint(
    "console_payouts", __name__, url_prefix="/api/console/v1/payouts", description="Payouts (finance)."
)


@blp.route("")
@staff_required(Role.FINANCE)
@blp.arguments(PayoutQuerySchema, location="query")
@blp.response(200, PayoutSchema(many=True))
def list_payouts(args: dict[str, Any]) -> list[Payout]:
    """This merchant's payouts, newest first; ``status`` (repeatable) filters, e.g. ``unknown``."""
    return service.list_payouts(merchant_id=current_merchant_id(), statuses=args["status"])
