from __future__ import annotations

from typing import Any

from flask import request

from app.auth.guards import consumer_required, current_consumer
from app.behaviour.schemas import BatchResultSchema, BehaviourBatchSchema
from app.behaviour.service import record_events
from app.core.api import Blueprint
from app.core.tx import commit

blp = Blueprint(
    "mp_behaviour", __name__, url_prefix="/api/mp/v1", description="Browsing trail for risk signals."
)


@blp.route("/events", methods=["POST"])
@consumer_required
@blp.arguments(BehaviourBatchSchema)
@blp.response(202, BatchResultSchema)
def post_events(body: dict[str, Any]) -> dict[str, int]:
    """A batch (≤ 100) of `view`, `cart` and `share` events of the signed-in consumer."""
    principal = current_consumer()
    accepted = record_events(
        merchant_id=principal.merchant_id,
        consumer_id=principal.consumer_id,
        events=body["events"],
        ip=request.remote_addr,
    )
    commit()
    return {"accepted": accepted}
