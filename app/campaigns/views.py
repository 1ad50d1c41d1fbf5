"""``/api/console/v1/campaigns``: operators shape, preview and replay campaigns and issue red packets;
finance funds them; every role reads them and their stats."""

from __future__ import annotations

from typing import Any

from app.audit.service import Actor
from app.auth.guards import current_merchant_id, current_staff, merchant_is_suspended, staff_required
from app.auth.principals import Role
from app.campaigns import preview as previews
from app.campaigns import service
from app.campaigns.models import Campaign, CampaignStatus
from app.campaigns.schemas import (
    CampaignCreateSchema,
    CampaignSchema,
    CampaignStatsSchema,
    FundSchema,
    IssuedRedPacketSchema,
    IssueRedPacketSchema,
    PreviewResultSchema,
    PreviewSchema,
    ReplayResultSchema,
    ReplaySchema,
    RulesSchema,
    TransitionSchema,
    campaign_view,
    preview_view,
    replay_view,
)
from app.campaigns.stats import campaign_stats
from app.core.api import Blueprint
from app.core.errors import Forbidden
from app.core.tx import commit
from app.red_packets.models import RedPacket

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
@staff_required(Role.OPERATOR, while_suspended=True)
@blp.arguments(TransitionSchema)
@blp.response(200, CampaignSchema)
def change_status(body: dict[str, Any], campaign_id: int) -> dict[str, Any]:
    """Activate (scheduled until its start), pause, resume or end the campaign. A suspended merchant
    may only pause or end one."""
    target = CampaignStatus(body["to"])
    if target in (CampaignStatus.ACTIVE, CampaignStatus.SCHEDULED) and merchant_is_suspended():
        raise Forbidden(
            "this merchant is suspended: campaigns can be paused or ended, not started",
            details={"merchant_status": "suspended"},
        )
    campaign = service.transition(
        merchant_id=current_merchant_id(),
        campaign_id=campaign_id,
        to=target,
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
    service.fund_campaign(
        merchant_id=current_merchant_id(),
        campaign_id=campaign_id,
        amount=body["amount_fen"],
        source=body["source"],
        key=f"fund:{campaign_id}:{body['idempotency_key']}",
        actor=_actor(),
        is_platform_admin=current_staff().is_platform_admin,
    )
    commit()
    return _view(service.get_campaign(merchant_id=current_merchant_id(), campaign_id=campaign_id))


@blp.route("/<int:campaign_id>/preview", methods=["POST"])
@staff_required(Role.OPERATOR, while_suspended=True)
@blp.arguments(PreviewSchema)
@blp.response(200, PreviewResultSchema)
def preview(body: dict[str, Any], campaign_id: int) -> dict[str, Any]:
    """Dry-run the rules (a draft, or the current version) against one described order. Writes nothing."""
    result = previews.preview_order(merchant_id=current_merchant_id(), campaign_id=campaign_id, **body)
    return preview_view(result)


@blp.route("/<int:campaign_id>/replay", methods=["POST"])
@staff_required(Role.OPERATOR, while_suspended=True)
@blp.arguments(ReplaySchema)
@blp.response(200, ReplayResultSchema)
def replay(body: dict[str, Any], campaign_id: int) -> dict[str, Any]:
    """Replay the merchant's paid orders of the last ``days`` days (at most 20 000, oldest first) under
    the rules, with a simulated budget, caps and red packets, beside what the live rules granted.
    Writes nothing."""
    result = previews.replay_orders(merchant_id=current_merchant_id(), campaign_id=campaign_id, **body)
    return replay_view(result)


@blp.route("/<int:campaign_id>/red-packets", methods=["POST"])
@staff_required(Role.OPERATOR)
@blp.arguments(IssueRedPacketSchema)
@blp.response(201, IssuedRedPacketSchema)
def issue_red_packet(body: dict[str, Any], campaign_id: int) -> RedPacket:
    """Issue a red packet of a two-way rule of the current version to a consumer, reserving its worst
    case (409 ``insufficient_funds`` when the budget cannot). Idempotent on ``idempotency_key``."""
    packet = service.issue_staff_red_packet(
        merchant_id=current_merchant_id(),
        campaign_id=campaign_id,
        consumer_id=body["consumer_id"],
        rule_id=body["rule_id"],
        key=body["idempotency_key"],
        actor=_actor(),
    )
    commit()
    return packet


@blp.route("/<int:campaign_id>/stats")
@staff_required()
@blp.response(200, CampaignStatsSchema)
def stats(campaign_id: int) -> dict[str, Any]:
    """Packets issued / live / redeemed / expired, budget, cost booked, GMV driven, redemption rate, ROI."""
    return campaign_stats(merchant_id=current_merchant_id(), campaign_id=campaign_id)
