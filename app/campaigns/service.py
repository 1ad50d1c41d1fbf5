"""Campaign lifecycle, versioned rules, funding and staff-issued red packets (money moves only through
the ledger)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, func, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import JSONB, array

from app.audit.service import SYSTEM, Actor, record_audit
from app.campaigns.models import CAMPAIGN_TRANSITIONS, Campaign, CampaignStatus, RuleVersion
from app.consumers.models import Consumer
from app.core.db import utcnow
from app.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.core.money import Money
from app.core.tx import commit
from app.extensions import db
from app.ledger.accounts import campaign_accounts, merchant_accounts, natural_key, platform_account
from app.ledger.models import AccountKind, EntryReason, LedgerAccount, OwnerType
from app.ledger.service import Overdraft, find_entry, post_entry
from app.rebates.ruledoc import RuleDocumentError, RuleSet, TwoWayRule, load_rules
from app.rebates.rules import IssueRedPacket, OrderFacts, SkipReason, UserFacts, evaluate
from app.red_packets.models import RedPacket
from app.red_packets.service import issue_granted_packet

# Budget for building a packet in isolation; the ledger's reservation is the real budget check.
_UNLIMITED = Money(2**62)


def validated_rules(document: dict[str, Any]) -> RuleSet:
    """The typed rule set of ``document``, or InvalidInput (422) naming every bad field."""
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
    pays_out_as_cash: bool = False,
) -> Campaign:
    """A draft campaign with rules version 1."""
    _check_window(starts_at, ends_at)
    validated_rules(rules)
    campaign = Campaign(
        merchant_id=merchant_id,
        name=name,
        starts_at=starts_at,
        ends_at=ends_at,
        skip_stats={},
        pays_out_as_cash=pays_out_as_cash,
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
    # ``lock`` queues PostgreSQL callers changing a campaign's status or rules (staff actions; SQLite
    # serialises whole transactions). Its money is guarded by the ledger: the budget never goes negative.
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
    validated_rules(rules)
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


def deposit_budget(*, key: str, amount: Money, merchant_id: int | None, actor: Actor = SYSTEM) -> bool:
    """Money paid in from outside the ledger (a bank transfer): into ``merchant_id``'s marketing budget,
    or the platform's when None. Once per ``key``: False (nothing written, no audit entry) if it was
    recorded before; the deposit that took effect is audited as ``actor``'s. The caller commits."""
    if merchant_id is not None:
        target, entry_key, cause, memo = (
            merchant_accounts(merchant_id).budget,
            f"deposit:{key}",
            "merchant_deposit",
            "merchant budget funded from outside the ledger",
        )
    else:
        target, entry_key, cause, memo = (
            platform_account(AccountKind.PLATFORM_MARKETING_BUDGET),
            f"platform-funding:{key}",
            "platform_funding",
            "platform marketing budget funded from outside the ledger",
        )
    entry = post_entry(
        key=entry_key,
        reason=EntryReason.FUNDING,
        cause_type=cause,
        cause_id=str(merchant_id or 0),
        # The outside world's side, kept per merchant (the platform's own when None): a deposit writes
        # only its merchant's rows, so merchants never queue on one balance (nor cross shards).
        lines=[
            (platform_account(AccountKind.PLATFORM_FUNDING_SOURCE, merchant_id), -amount),
            (target, amount),
        ],
        merchant_id=merchant_id,
        memo=memo,
    )
    if entry is None:
        return False
    record_audit(
        actor=actor,
        action="budget.deposit",
        target_type="merchant" if merchant_id is not None else "platform",
        target_id=merchant_id,
        merchant_id=merchant_id,
        after={"amount_fen": amount.fen, "key": key, "entry_id": entry.id},
    )
    return True


def fund_campaign(
    *,
    merchant_id: int,
    campaign_id: int,
    amount: Money,
    source: str,
    key: str,
    actor: Actor,
    is_platform_admin: bool = False,
) -> None:
    """Move ``amount`` into the campaign budget from the merchant's or the platform's marketing budget.

    Only platform admins (``is_platform_admin``) spend the platform's marketing budget (403 otherwise).
    """
    if source == "platform" and not is_platform_admin:
        raise Forbidden("only platform admins spend the platform's marketing budget")
    if amount.fen <= 0:
        raise InvalidInput("amount_fen must be positive", details={"fields": {"amount_fen": ["must be > 0"]}})
    campaign = get_campaign(merchant_id=merchant_id, campaign_id=campaign_id)
    if campaign.status is CampaignStatus.ENDED:
        raise Conflict("an ended campaign cannot be funded")
    if source == "merchant":
        origin = merchant_accounts(merchant_id).budget
    else:
        origin = platform_account(AccountKind.PLATFORM_MARKETING_BUDGET)
    entry = post_entry(
        key=key,
        reason=EntryReason.BUDGET_TRANSFER,
        cause_type="campaign",
        cause_id=str(campaign.id),
        lines=[(origin, -amount), (campaign_accounts(merchant_id, campaign.id).budget, amount)],
        merchant_id=merchant_id,
        memo=f"fund campaign {campaign.id} from the {source} budget",
    )
    if entry is None:
        return  # a replay of a request that took effect: one effect, one audit entry
    record_audit(
        actor=actor,
        action="campaign.fund",
        target_type="campaign",
        target_id=campaign.id,
        merchant_id=merchant_id,
        after={"amount_fen": amount.fen, "source": source},
    )


def budget_balances(campaign: Campaign) -> tuple[Money, Money]:
    """(remaining, reserved) from the ledger's cached balances; read-only (a missing account is 0)."""

    def balance(kind: AccountKind) -> Money:
        key = natural_key(
            kind=kind, owner_type=OwnerType.CAMPAIGN, owner_id=campaign.id, merchant_id=campaign.merchant_id
        )
        value = db.session.scalar(select(LedgerAccount.balance).where(LedgerAccount.natural_key == key))
        return value if value is not None else Money(0)

    return balance(AccountKind.CAMPAIGN_BUDGET), balance(AccountKind.CAMPAIGN_RESERVED)


def budget_view(campaign: Campaign) -> dict[str, int]:
    """Remaining (spendable) and reserved budget, in fen, straight from the ledger's cached balances."""
    remaining, reserved = budget_balances(campaign)
    return {"budget_remaining_fen": remaining.fen, "budget_reserved_fen": reserved.fen}


def count_skips(campaign_id: int, reason: str, n: int = 1) -> None:
    """Add ``n`` to the campaign's count of grants skipped for ``reason`` (``skip_stats``), in one
    UPDATE that reads and writes the JSON in the database: paid orders book without locking the
    campaign, so a read-modify-write in Python would lose counts. The row is locked from here to the
    commit: a paid order counts its campaigns' skips in campaign order, before it moves any balance, as
    a staff action on a campaign locks the campaign before its budget."""
    db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id)
        .values(skip_stats=_incremented(Campaign.skip_stats, reason, n))
        .execution_options(synchronize_session=False)
    )
    loaded = db.session.identity_map.get(db.session.identity_key(Campaign, campaign_id))
    if loaded is not None:
        db.session.expire(loaded, ["skip_stats"])


def _incremented(stats: Any, reason: str, n: int) -> Any:
    """``stats`` (a JSON object column) with ``reason`` incremented by ``n``, as SQL of the bound engine."""
    if db.session.get_bind().dialect.name == "sqlite":
        path = "$." + json.dumps(reason)  # a quoted member name: any reason text
        current = func.coalesce(func.json_extract(stats, path), 0)
        return func.json_set(func.coalesce(stats, "{}"), path, current + n)
    as_jsonb = func.coalesce(sql_cast(stats, JSONB), sql_cast("{}", JSONB))
    current = func.coalesce(sql_cast(as_jsonb.op("->>")(reason), BigInteger), 0)
    return sql_cast(func.jsonb_set(as_jsonb, array([reason]), func.to_jsonb(current + n)), JSON)


# ---------------------------------------------------------------- red packets issued by staff


def _staff_packet_grant(rules: RuleSet, rule_id: str, consumer_id: int, now: datetime) -> IssueRedPacket:
    """The packet an order reaching ``rule_id``'s trigger would earn now: same value, validity, rates
    (boosted by the multipliers active now, as the engine freezes them) and worst case."""
    rule = rules.get(rule_id)
    if not isinstance(rule, TwoWayRule):
        raise InvalidInput(
            f"the current rules have no two-way rule {rule_id!r}",
            details={"fields": {"rule_id": ["Not a two-way rule of the current rules version."]}},
        )
    boosts = tuple(boost for boost in rules.multipliers if rule_id in boost.applies_to)
    trigger = OrderFacts(
        order_id=0,
        consumer_id=consumer_id,
        total_fen=rule.trigger_min_order_fen,
        paid_fen=rule.trigger_min_order_fen,
        paid_at=now,
    )
    # The engine itself builds the packet: one place decides frozen rates and the reserved worst case.
    evaluation = evaluate(
        trigger, UserFacts(), RuleSet((rule, *boosts)), now=now, budget_remaining=_UNLIMITED
    )
    (grant,) = evaluation.issued
    return grant


def issue_staff_red_packet(
    *,
    merchant_id: int,
    campaign_id: int,
    consumer_id: int,
    rule_id: str,
    key: str,
    actor: Actor,
    now: datetime | None = None,
) -> RedPacket:
    """Issue one red packet of a two-way rule of the current version to a consumer, reserving its worst
    case. Idempotent on ``key``. A budget that cannot cover it: 409 ``insufficient_funds``, counted in the
    campaign's ``skip_stats`` (that count and the audit entry of the refusal are committed)."""
    campaign = get_campaign(merchant_id=merchant_id, campaign_id=campaign_id, lock=True)
    consumer = db.session.scalar(
        select(Consumer).where(Consumer.id == consumer_id, Consumer.merchant_id == merchant_id)
    )
    if consumer is None:
        raise NotFound("no such consumer")
    ledger_key = f"staff-issue:{campaign.id}:{key}"
    earlier = find_entry(ledger_key)
    if earlier is not None:
        packet = db.session.get(RedPacket, int(earlier.cause_id))
        assert packet is not None
        if (packet.consumer_id, packet.rule_id) != (consumer_id, rule_id):
            raise Conflict(
                "this idempotency_key issued a different red packet", details={"red_packet_id": packet.id}
            )
        return packet
    if campaign.status is CampaignStatus.ENDED:
        raise Conflict("an ended campaign issues no red packets")
    now = now or utcnow()
    version = current_version(campaign)
    grant = _staff_packet_grant(validated_rules(version.document), rule_id, consumer_id, now)
    audit = {
        "campaign_id": campaign.id,
        "consumer_id": consumer_id,
        "rule_id": rule_id,
        "rules_version": version.version,
    }
    try:
        packet = issue_granted_packet(
            grant,
            merchant_id=merchant_id,
            campaign_id=campaign.id,
            rule_version_id=version.id,
            valid_from=now,
            idempotency_key=ledger_key,
        )
    except Overdraft:
        # The refusal is an outcome worth keeping: the skip count and the audit entry are committed
        # before the 409 (as a failed login's count is).
        count_skips(campaign.id, SkipReason.BUDGET_EXHAUSTED.value)
        record_audit(
            actor=actor,
            action="campaign.red_packet.refused",
            target_type="campaign",
            target_id=campaign.id,
            merchant_id=merchant_id,
            after=audit | {"worst_case_cost_fen": grant.worst_case_cost.fen, "reason": "budget exhausted"},
        )
        commit()
        raise
    assert packet is not None  # the key was unused just now, under the campaign's row lock
    record_audit(
        actor=actor,
        action="campaign.red_packet.issue",
        target_type="red_packet",
        target_id=packet.id,
        merchant_id=merchant_id,
        after=audit | {"face_value_fen": packet.face_value.fen, "reserved_fen": packet.reserved.fen},
    )
    return packet
