"""``/api/console/v1/campaigns``: operators shape campaigns, finance funds them."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from app.audit.service import Actor
from app.auth.guards import current_merchant_id, current_staff, staff_required
from app.auth.principals import Role
from app.campaigns import service
from app.campaigns.models import Campaign, CampaignStatus
from app.campaigns.schemas import (
    CampaignCreateSchema,
    CampaignSchema,
    FundSchema,
    RulesSchema,
    TransitionSchema,
    campaign_view,
)
from app.core.errors import Forbidden
from app.core.tx import commit

blp = Blueprint(
    "console_campaigns",
    __name__,
    url_prefix="/api/console/v1/campaigns",
    description="Campaigns: rules (versioned), budget, lifecycle.",
)


def _actor() -> Actor:
    return Actor("staff", str(current_staff().staff_id))


def _view(campaign: Campaign) -> dict[str, Any]:
    return campaign_view(campaign, service.current_version(campaign), service.budget_view(campaign))


@blp.route("")
@staff_required()
@blp.response(200, CampaignSchema(many=True))
def list_campaigns() -> list[dict[str, Any]]:
    """This merchant's campaigns."""
    return [_view(c) for c in service.list_campaigns(merchant_id=current_merchant_id())]


@blp.route("", methods=["POST"])
@staff_required(Role.OPERATOR)
@blp.arguments(CampaignCreateSchema)
@blp.response(201, CampaignSchema)
def create(body: dict[str, Any]) -> dict[str, Any]:
    """A draft campaign with its first rules version."""
    campaign = service.create_campaign(
        merchant_id=current_merchant_id(), actor=_actor(), staff_id=current_staff().staff_id, **body
    )
    commit()
    return _view(campaign)


@blp.route("/<int:campaign_id>")
@staff_required()
@blp.response(200, CampaignSchema)
def get(campaign_id: int) -> dict[str, Any]:
    return _view(service.get_campaign(merchant_id=current_merchant_id(), campaign_id=campaign_id))


@blp.route("/<int:campaign_id>/rules", methods=["POST"])
@staff_required(Role.OPERATOR)
@blp.arguments(RulesSchema)
@blp.response(200, CampaignSchema)
def new_rules(body: dict[str, Any], campaign_id: int) -> dict[str, Any]:
    """Change the rules: a new version; existing grants and red packets keep theirs."""
    service.new_rules_version(
        merchant_id=current_merchant_id(),
        campaign_id=campaign_id,
        rules=body["rules"],
        actor=_actor(),
        staff_id=current_staff().staff_id,
    )
    commit()
    return _view(service.get_campaign(merchant_id=current_merchant_id(), campaign_id=campaign_id))


@blp.route("/<int:campaign_id>/status", methods=["POST"])
@staff_required(Role.OPERATOR)
@blp.arguments(TransitionSchema)
@blp.response(200, CampaignSchema)
def change_status(body: dict[str, Any], campaign_id: int) -> dict[str, Any]:
    """Activate (scheduled until its start), pause, resume or end the campaign."""
    campaign = service.transition(
        merchant_id=current_merchant_id(),
        campaign_id=campaign_id,
        to=CampaignStatus(body["to"]),
        actor=_actor(),
    )
    commit()
    return _view(campaign)


@blp.route("/<int:campaign_id>/fund", methods=["POST"])
@staff_required(Role.FINANCE)
@blp.arguments(FundSchema)
@blp.response(200, CampaignSchema)
def fund(body: dict[str, Any], campaign_id: int) -> dict[str, Any]:
    """Move money into the campaign budget from the merchant's budget (or, for platform admins, the
    platform's marketing budget). Idempotent on ``idempotency_key``."""
    if body["source"] == "platform" and not current_staff().is_platform_admin:
        raise Forbidden("only platform admins spend the platform's marketing budget")
    service.fund_campaign(
        merchant_id=current_merchant_id(),
        campaign_id=campaign_id,
        amount=body["amount_fen"],
        source=body["source"],
        key=f"fund:{campaign_id}:{body['idempotency_key']}",
        actor=_actor(),
    )
    commit()
    return _view(service.get_campaign(merchant_id=current_merchant_id(), campaign_id=campaign_id))
