from __future__ import annotations

from typing import Any

from flask import current_app

from app.auth.guards import public
from app.core.api import Blueprint
from app.health.schemas import LivenessSchema, ReadinessSchema
from app.health.service import check_readiness

blp = Blueprint("health", __name__, description="Liveness and readiness probes (public).")


@blp.route("/healthz")
@public
@blp.response(200, LivenessSchema)
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@blp.route("/readyz")
@public
@blp.response(200, ReadinessSchema)
@blp.alt_response(503, schema=ReadinessSchema, description="A dependency is not ready.")
def readyz() -> tuple[dict[str, Any], int]:
    """Database and Redis reachable, the schema at the migration head, a live worker on every queue."""
    report = check_readiness(current_app._get_current_object())  # type: ignore[attr-defined]
    return report, 200 if report["status"] == "ready" else 503
