"""Campaign lifecycle, versioned rules and funding (money moves only through the ledger)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from app.audit.service import Actor, record_audit
from app.campaigns.models import CAMPAIGN_TRANSITIONS, Campaign, CampaignStatus, RuleVersion
from app.core.db import utcnow
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.money import Money
from app.extensions import db
from app.ledger.accounts import campaign_accounts, merchant_accounts, platform_account
from app.ledger.models import AccountKind, EntryReason
from app.ledger.service import post_entry
from app.rebates.ruledoc import RuleDocumentError, RuleSet, load_rules


def _validated(document: dict[str, Any]) -> RuleSet:
    try:
        return load_rules(document)
    except RuleDocumentError as exc:
        raise InvalidInput(str(exc), details=getattr(exc, "details", {})) from None


def _check_window(starts_at: datetime, ends_at: datetime) -> None:
    if ends_at <= starts_at:
        raise InvalidInput(
            "ends_at must be after starts_at", details={"fields": {"ends_at": ["before starts_at"]}}
        )


def create_campaign(
    *,
    merchant_id: int,
    name: str,
    starts_at: datetime,
    ends_at: datetime,
    rules: dict[str, Any],
    actor: Actor,
    staff_id: int | None = None,
) -> Campaign:
    """A draft campaign with rules version 1."""
    _check_window(starts_at, ends_at)
    _validated(rules)
    campaign = Campaign(
        merchant_id=merchant_id, name=name, starts_at=starts_at, ends_at=ends_at, skip_stats={}
    )
    db.session.add(campaign)
    db.session.flush()
    version = RuleVersion(campaign_id=campaign.id, version=1, document=rules, created_by_staff_id=staff_id)
    db.session.add(version)
    db.session.flush()
    campaign.current_version_id = version.id
    record_audit(
        actor=actor,
        action="campaign.create",
        target_type="campaign",
        target_id=campaign.id,
        merchant_id=merchant_id,
        after={"name": name, "rules_version": 1},
    )
    return campaign


def get_campaign(*, merchant_id: int, campaign_id: int, lock: bool = False) -> Campaign:
    query = select(Campaign).where(Campaign.id == campaign_id, Campaign.merchant_id == merchant_id)
    campaign = db.session.scalar(query.with_for_update() if lock else query)
    if campaign is None:
        raise NotFound("no such campaign")
    return campaign


def list_campaigns(*, merchant_id: int) -> list[Campaign]:
    return list(
        db.session.scalars(select(Campaign).where(Campaign.merchant_id == merchant_id).order_by(Campaign.id))
    )


def new_rules_version(
    *, merchant_id: int, campaign_id: int, rules: dict[str, Any], actor: Actor, staff_id: int | None = None
) -> RuleVersion:
    """Rules change only by a new version; grants and packets keep the version they were made with."""
    campaign = get_campaign(merchant_id=merchant_id, campaign_id=campaign_id, lock=True)
    if campaign.status is CampaignStatus.ENDED:
        raise Conflict("an ended campaign's rules cannot change")
    _validated(rules)
    number = 1 + (
        db.session.scalar(select(func.max(RuleVersion.version)).where(RuleVersion.campaign_id == campaign.id))
        or 0
    )
    version = RuleVersion(
        campaign_id=campaign.id, version=number, document=rules, created_by_staff_id=staff_id
    )
    db.session.add(version)
    db.session.flush()
    campaign.current_version_id = version.id
    record_audit(
        actor=actor,
        action="campaign.rules",
        target_type="campaign",
        target_id=campaign.id,
        merchant_id=merchant_id,
        after={"rules_version": number},
    )
    return version


def current_version(campaign: Campaign) -> RuleVersion:
    version = db.session.get(RuleVersion, campaign.current_version_id)
    assert version is not None
    return version


def transition(
    *, merchant_id: int, campaign_id: int, to: CampaignStatus, actor: Actor, now: datetime | None = None
) -> Campaign:
    """Move a campaign along draft → scheduled → active ⇄ paused → ended (explicit table, row lock)."""
    campaign = get_campaign(merchant_id=merchant_id, campaign_id=campaign_id, lock=True)
    now = now or utcnow()
    if to is CampaignStatus.ACTIVE and campaign.status in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
        # "Activate" before the start time schedules it; the sweep activates it on time.
        to = CampaignStatus.SCHEDULED if campaign.starts_at > now else CampaignStatus.ACTIVE
    if to is CampaignStatus.ACTIVE and campaign.ends_at <= now:
        raise Conflict("the campaign's end time has passed")
    if to not in CAMPAIGN_TRANSITIONS[campaign.status]:
        raise Conflict(
            f"a {campaign.status.value} campaign cannot become {to.value}",
            details={"status": campaign.status.value},
        )
    before = campaign.status
    campaign.status = to
    record_audit(
        actor=actor,
        action="campaign.status",
        target_type="campaign",
        target_id=campaign.id,
        merchant_id=merchant_id,
        before={"status": before.value},
        after={"status": to.value},
    )
    return campaign


def advance_schedules(now: datetime | None = None) -> int:
    """Start scheduled campaigns whose time has come and end those past their end (periodic)."""
    now = now or utcnow()
    changed = 0
    for campaign in db.session.scalars(
        select(Campaign)
        .where(Campaign.status.in_([CampaignStatus.SCHEDULED, CampaignStatus.ACTIVE, CampaignStatus.PAUSED]))
        .with_for_update(skip_locked=True)
    ):
        if campaign.ends_at <= now:
            campaign.status = CampaignStatus.ENDED
            changed += 1
        elif campaign.status is CampaignStatus.SCHEDULED and campaign.starts_at <= now:
            campaign.status = CampaignStatus.ACTIVE
            changed += 1
    return changed


def fund_campaign(
    *, merchant_id: int, campaign_id: int, amount: Money, source: str, key: str, actor: Actor
) -> None:
    """Move ``amount`` into the campaign budget from the merchant's or the platform's marketing budget."""
    if amount.fen <= 0:
        raise InvalidInput("amount_fen must be positive", details={"fields": {"amount_fen": ["must be > 0"]}})
    campaign = get_campaign(merchant_id=merchant_id, campaign_id=campaign_id)
    if campaign.status is CampaignStatus.ENDED:
        raise Conflict("an ended campaign cannot be funded")
    if source == "merchant":
        origin = merchant_accounts(merchant_id).budget
    else:
        origin = platform_account(AccountKind.PLATFORM_MARKETING_BUDGET)
    post_entry(
        key=key,
        reason=EntryReason.BUDGET_TRANSFER,
        cause_type="campaign",
        cause_id=str(campaign.id),
        lines=[(origin, -amount), (campaign_accounts(merchant_id, campaign.id).budget, amount)],
        merchant_id=merchant_id,
        memo=f"fund campaign {campaign.id} from the {source} budget",
    )
    record_audit(
        actor=actor,
        action="campaign.fund",
        target_type="campaign",
        target_id=campaign.id,
        merchant_id=merchant_id,
        after={"amount_fen": amount.fen, "source": source},
    )


def budget_view(campaign: Campaign) -> dict[str, int]:
    """Remaining (spendable) and reserved budget, in fen, straight from the ledger's cached balances."""
    accounts = campaign_accounts(campaign.merchant_id, campaign.id)
    return {
        "budget_remaining_fen": accounts.budget.balance.fen,
        "budget_reserved_fen": accounts.reserved.balance.fen,
    }


def count_skip(campaign: Campaign, reason: str) -> None:
    stats = dict(campaign.skip_stats or {})
    stats[reason] = int(stats.get(reason, 0)) + 1
    campaign.skip_stats = stats
