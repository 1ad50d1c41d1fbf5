"""``/api/console/v1/consumers/{id}/ban|unban`` and ``/api/console/v1/merchant``."""

from __future__ import annotations

from typing import Any

from app.auth.guards import current_actor, current_merchant_id, staff_required
from app.auth.principals import Role
from app.console.schemas import (
    BanSchema,
    ConsumerStatusSchema,
    MerchantPolicyPatchSchema,
    MerchantProfileSchema,
)
from app.console.service import ban_consumer, merchant_profile, unban_consumer, update_merchant_policy
from app.consumers.models import Consumer
from app.core.api import Blueprint
from app.core.tx import commit

blp = Blueprint(
    "console",
    __name__,
    url_prefix="/api/console/v1",
    description="Consumer bans and the merchant's profile and policy.",
)


@blp.route("/consumers/<int:consumer_id>/ban", methods=["POST"])
@staff_required(Role.REVIEWER, while_suspended=True)
@blp.arguments(BanSchema)
@blp.response(200, ConsumerStatusSchema)
def ban(data: dict[str, Any], consumer_id: int) -> Consumer:
    """Ban a consumer and end all their sessions. Reviewer or owner."""
    consumer = ban_consumer(
        merchant_id=current_merchant_id(),
        consumer_id=consumer_id,
        reason=data["reason"],
        actor=current_actor(),
    )
    commit()
    return consumer


@blp.route("/consumers/<int:consumer_id>/unban", methods=["POST"])
@staff_required(Role.REVIEWER, while_suspended=True)
@blp.response(200, ConsumerStatusSchema)
def unban(consumer_id: int) -> Consumer:
    """Lift a ban (the consumer logs in again). Reviewer or owner."""
    consumer = unban_consumer(
        merchant_id=current_merchant_id(), consumer_id=consumer_id, actor=current_actor()
    )
    commit()
    return consumer


@blp.route("/merchant", methods=["GET"])
@staff_required()
@blp.response(200, MerchantProfileSchema)
def get_merchant_profile() -> dict[str, Any]:
    """The merchant's identifiers and policy; secrets only as configured flags. Any role."""
    return merchant_profile(merchant_id=current_merchant_id())


@blp.route("/merchant", methods=["PATCH"])
@staff_required(Role.OWNER)
@blp.arguments(MerchantPolicyPatchSchema)
@blp.response(200, MerchantProfileSchema)
def patch_merchant_profile(data: dict[str, Any]) -> dict[str, Any]:
    """Change payout and settlement policy (money in fen). Owner only."""
    profile = update_merchant_policy(merchant_id=current_merchant_id(), changes=data, actor=current_actor())
    commit()
    return profile
