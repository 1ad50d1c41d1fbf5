"""``GET /api/console/v1/audit``: the merchant's audit log, newest first."""

from __future__ import annotations

from typing import Any

from app.audit.queries import AuditPage, list_audit_entries
from app.audit.schemas import AuditPageSchema, AuditQuerySchema
from app.auth.guards import current_merchant_id, staff_required
from app.auth.principals import Role
from app.core.api import Blueprint

blp = Blueprint(
    "console_audit", __name__, url_prefix="/api/console/v1", description="The merchant's audit log."
)


@blp.route("/audit", methods=["GET"])
@staff_required(Role.OWNER, Role.FINANCE, Role.VIEWER)
@blp.arguments(AuditQuerySchema, location="query")
@blp.response(200, AuditPageSchema)
def list_audit(query: dict[str, Any]) -> AuditPage:
    """Who changed what at this merchant, newest first (``limit``, ``cursor``). Owner, finance or viewer."""
    return list_audit_entries(merchant_id=current_merchant_id(), limit=query["limit"], cursor=query["cursor"])
