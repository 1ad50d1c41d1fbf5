"""``GET /api/console/v1/dashboard``: the figures the console's dashboard page shows (any role)."""

from __future__ import annotations

from typing import Any

from app.auth.guards import current_merchant_id, staff_required
from app.core.api import Blueprint
from app.dashboard.schemas import DashboardQuerySchema, DashboardSchema
from app.dashboard.service import dashboard, date_range

blp = Blueprint(
    "console_dashboard",
    __name__,
    url_prefix="/api/console/v1/dashboard",
    description="The merchant's dashboard: ledger balances and flows, the red-packet funnel, over China days.",
)


@blp.route("")
@staff_required()
@blp.arguments(DashboardQuerySchema, location="query")
@blp.response(200, DashboardSchema)
def get_dashboard(args: dict[str, Any]) -> dict[str, Any]:
    """Every dashboard widget over ``from``…``to`` (China days, at most 366; default the last 30)."""
    return dashboard(merchant_id=current_merchant_id(), span=date_range(args["first"], args["last"]))
