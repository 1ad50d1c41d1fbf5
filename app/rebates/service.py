"""Booking what paid orders earn, settling it after the after-sales window, clawing it back on refunds.

Subscribed to the payment domain's events (in the same transaction as the fact they follow):
``order.paid`` → red packet redeemed, two-way legs and new grants booked *pending*, new red packets
issued; ``refund.succeeded`` → every grant of the order reversed pro rata; ``order.closed`` → a
reserved red packet released. Every movement is a ledger entry with a key derived from its cause.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple, cast

from sqlalchemy import BigInteger, Table, and_, bindparam, case, func, insert, or_, select
from sqlalchemy.orm import aliased

from app.campaigns.models import Campaign, CampaignStatus, RuleVersion
from app.campaigns.service import count_skips
from app.core.calendar import beijing_day_start, beijing_month_start, beijing_week_start
from app.core.db import utcnow
from app.core.errors import ConcurrentChange, DomainError
from app.core.guards import guarded_update
from app.core.money import Money
from app.coupons.issuance import BUYER_LEG_KEY, reserve_leg_coupon, reserve_rule_coupon
from app.events.bus import Event
from app.extensions import db
from app.invitations.service import attribution_for
from app.ledger.accounts import campaign_accounts, consumer_accounts, merchant_accounts, natural_key_of
from app.ledger.models import AccountKind, EntryReason, LedgerAccount
from app.ledger.service import Account, AccountRef, Batch, Draft, Overdraft, post_entry
from app.limits.service import BUYER_DAY_FEN, BUYER_MONTH_FEN, BUYER_WEEK_FEN, UNLIMITED, Window, take_all
from app.merchants.models import Merchant
from app.orders.models import Order, OrderStatus
from app.personal.models import FUNDING_ORDER_PREFIX
from app.rebates.models import GrantStatus, RebateGrant
from app.rebates.ruledoc import (
    Caps,
    DistributionRule,
    InviteRule,
    LegPayment,
    RuleSet,
    TwoWayRule,
    stored_rules,
)
from app.rebates.rules import (
    Beneficiary,
    IssueRedPacket,
    OrderFacts,
    Rebate,
    RedPacketFacts,
    SkipReason,
    UserFacts,
    evaluate,
)
from app.red_packets.models import RedPacket, RedPacketStatus
from app.red_packets.service import granted_packet_row, insert_packet, release_from_order
from app.reviews.service import flag_for_review
from app.risk import OrderVerdict, judge_paid_order
from app.risk.holds import not_held
from app.withdrawals.service import request_withdrawal

logger = logging.getLogger("hongli.rebates")
CHINA = timezone(timedelta(hours=8))
DISCOUNT = "red_packet_discount"  # the campaign paying the merchant the face value a buyer spent
COUPON_DISCOUNT = "coupon_discount"  # the campaign paying the merchant what a used coupon cost it
_MERCHANT_SIDE = {Beneficiary.ISSUER_MERCHANT.value, DISCOUNT, COUPON_DISCOUNT}


# ---------------------------------------------------------------- booking (order.paid)


class _LiveCampaign(NamedTuple):
    """An active campaign as a paid order needs it: its current rules and its budget, read in one go."""

    id: int
    version_id: int
    document: dict[str, Any]
    budget: AccountRef | None  # None: never funded
    budget_fen: int
    reserved: AccountRef | None


class _PaidOrder(NamedTuple):
    id: int
    merchant_id: int
    consumer_id: int
    total: Money
    paid_amount: Money
    discount: Money
    paid_at: datetime | None
    buyer_pending: AccountRef | None  # the buyer's pending bucket, if it exists yet


_budget = aliased(LedgerAccount)
_reserved = aliased(LedgerAccount)
# The merchant's active campaigns, each with its current rules, its budget's balance and its two account
# ids: one statement whatever the number of campaigns (no campaign row is locked: see on_order_paid).
_LIVE_CAMPAIGNS = (
    select(
        Campaign.id,
        RuleVersion.id,
        RuleVersion.document,
        _budget.id,
        _budget.balance,
        _reserved.id,
    )
    .join(RuleVersion, RuleVersion.id == Campaign.current_version_id)
    .outerjoin(
        _budget,
        _budget.natural_key == natural_key_of(AccountKind.CAMPAIGN_BUDGET, Campaign.id, Campaign.merchant_id),
    )
    .outerjoin(
        _reserved,
        _reserved.natural_key
        == natural_key_of(AccountKind.CAMPAIGN_RESERVED, Campaign.id, Campaign.merchant_id),
    )
    .where(Campaign.merchant_id == bindparam("merchant"), Campaign.status == CampaignStatus.ACTIVE)
    .order_by(Campaign.id)
)
_PAID_ORDER = (
    select(
        Order.id,
        Order.merchant_id,
        Order.consumer_id,
        Order.total,
        Order.paid_amount,
        Order.discount,
        Order.paid_at,
        LedgerAccount.id,
        Order.out_order_no,
    )
    .outerjoin(
        LedgerAccount,
        LedgerAccount.natural_key
        == natural_key_of(AccountKind.CONSUMER_PENDING, Order.consumer_id, Order.merchant_id),
    )
    .where(Order.id == bindparam("order"), Order.status == OrderStatus.PAID)
)


def _live_campaigns(merchant_id: int) -> list[_LiveCampaign]:
    return [
        _LiveCampaign(
            id=campaign_id,
            version_id=version_id,
            document=document,
            budget=None if budget_id is None else AccountRef(budget_id, merchant_id),
            budget_fen=0 if balance is None else balance.fen,
            reserved=None if reserved_id is None else AccountRef(reserved_id, merchant_id),
        )
        for campaign_id, version_id, document, budget_id, balance, reserved_id in db.session.execute(
            _LIVE_CAMPAIGNS, {"merchant": merchant_id}
        )
    ]


def on_order_paid(event: Event) -> None:
    """Book what a paid order earns: the spent packet's legs, and every active campaign's grants.

    No campaign row is locked, and rules are evaluated against the budget as last committed. Everything
    the order books is written as one ledger :class:`Batch` whose balance moves come last, in ascending
    account id order like every other posting, so a campaign's budget (every order of the campaign wants
    it) is locked only from there to the commit. If a concurrent order took the budget meanwhile, the
    budget's conditional UPDATE refuses: the booking is rolled back to its savepoint and evaluated again
    on the budget as now committed, a few times; then the payment's transaction fails as a whole
    (``ConcurrentChange``) and WeChat's redelivery books it. The budget never goes negative either way;
    SQLite runs one writing transaction at a time, so there the first evaluation always holds.
    """
    packet_id = event.payload.get("red_packet_id")
    campaigns = _live_campaigns(event.merchant_id)
    if not packet_id and not campaigns:
        return  # no campaign running and no packet spent: nothing to book
    order_id, merchant_id, buyer, total, paid, discount, paid_at, pending_id, out_order_no = (
        db.session.execute(_PAID_ORDER, {"order": event.subject_id}).one()
    )
    if out_order_no.startswith(FUNDING_ORDER_PREFIX):
        return  # a consumer funding a personal red packet (app.personal): prepaid money, not a purchase
    order = _PaidOrder(
        order_id,
        merchant_id,
        buyer,
        total,
        paid,
        discount,
        paid_at,
        buyer_pending=None if pending_id is None else AccountRef(pending_id, merchant_id),
    )
    packet = int(packet_id) if packet_id else None
    payer = event.payload.get("payer_openid")
    if db.session.get_bind().dialect.name == "sqlite":
        _book(order, packet, campaigns, payer)
        return
    for attempt in range(1, BOOKING_ATTEMPTS + 1):
        try:
            with db.session.begin_nested():
                _book(order, packet, campaigns, payer)
            return
        except Overdraft:
            # A concurrent order spent a budget after it was read. No lock is taken before the batch (a
            # budget locked first would break the ascending order every posting keeps): read again.
            logger.info(
                "order %s: a budget was spent meanwhile; booking again (attempt %d)", order.id, attempt
            )
            campaigns = _live_campaigns(event.merchant_id)
    raise ConcurrentChange(f"order {order.id}: campaign budgets kept changing while it was booked")


# Each attempt is refused only if another order took the same budget between this one's read and its
# write; budgets run out, so a few attempts are enough outside contrived contention.
BOOKING_ATTEMPTS = 5


def _book(
    order: _PaidOrder, packet_id: int | None, campaigns: list[_LiveCampaign], payer: str | None = None
) -> None:
    booking = _Booking(order)
    packet = _redeem(booking, packet_id) if packet_id is not None else None
    facts = _OrderFacts(order, packet)
    released = Money(0)
    if packet is not None:
        released = _book_packet_legs(booking, packet, facts.get(needs_attribution=True))
    for campaign in campaigns:
        if packet is not None and campaign.id == packet.campaign_id:
            # What the spent packet's reservation gives back is the campaign's again, for this order too.
            campaign = campaign._replace(budget_fen=campaign.budget_fen + released.fen)
        _book_campaign(booking, campaign, facts)
    verdict = _risk(booking, payer)
    booking.write()
    if verdict is not None:
        verdict.hold_if_needed()


def _risk(booking: _Booking, payer: str | None) -> OrderVerdict | None:
    """Risk control, once per booking (app.risk): a limited claim issues no red packet or coupon (dropped
    before the write); a held reward keeps the order's consumer grants out of settlement until reviewed."""
    order = booking.order
    rewarded = [
        g for g in booking.grants if g["consumer_id"] is not None and g["beneficiary"] not in _MERCHANT_SIDE
    ]
    if not (rewarded or booking.packets or booking.coupons):
        return None
    verdict = judge_paid_order(
        merchant_id=order.merchant_id,
        consumer_id=order.consumer_id,
        order_id=order.id,
        related={g["consumer_id"] for g in rewarded} - {order.consumer_id},
        claims=len(booking.packets) + len(booking.coupons),
        payer=payer,
        paid_at=order.paid_at,
        rewarded=bool(rewarded),
    )
    if not verdict.claims_allowed:
        booking.packets.clear()
        booking.coupons.clear()
    return verdict


class _OrderFacts:
    """The order as the rules see it, the costly parts (the buyer's earlier orders, who invited them,
    the promoters) looked up only for a rule set that reads them, and once."""

    def __init__(self, order: _PaidOrder, packet: RedPacket | None) -> None:
        self.order = order
        self.packet = packet
        self._plain: OrderFacts | None = None
        self._attributed: OrderFacts | None = None

    def get(self, *, needs_attribution: bool) -> OrderFacts:
        if self._plain is None:
            self._plain = _order_facts(self.order, self.packet)
        if not needs_attribution:
            return self._plain
        if self._attributed is None:
            self._attributed = _attributed(self._plain, self.order)
        return self._attributed


def _redeem(booking: _Booking, packet_id: int) -> RedPacket | None:
    # The guard: reserved for this order → redeemed, in one conditional UPDATE (a packet spent on two
    # orders cannot be redeemed twice; the unique (red_packet_id, beneficiary) of grants backs it up).
    # A late payment of an order closed meanwhile finds its packet released (issued again): the payment
    # used it, so it is redeemed for this order unless another order has taken it since.
    order = booking.order
    redeemed = guarded_update(
        RedPacket,
        packet_id,
        RedPacket.merchant_id == order.merchant_id,
        or_(
            and_(RedPacket.status == RedPacketStatus.RESERVED, RedPacket.order_id == order.id),
            and_(RedPacket.status == RedPacketStatus.ISSUED, RedPacket.consumer_id == order.consumer_id),
        ),
        status=RedPacketStatus.REDEEMED,
        order_id=order.id,
        redeemed_at=order.paid_at or utcnow(),
    )
    packet = db.session.scalar(
        select(RedPacket).where(RedPacket.id == packet_id).execution_options(populate_existing=True)
    )
    if packet is None or not redeemed:
        # The payment happened with this discount; a packet that is no longer ours to redeem needs a person.
        flag_for_review(
            merchant_id=order.merchant_id,
            kind="red_packet_state",
            reason="order paid with a red packet that was not reserved for it",
            reference=f"order:{order.id}:packet:{packet_id}",
            details={"order_id": order.id},
        )
        return None
    booking.grant(
        campaign_id=packet.campaign_id,
        rule_version_id=packet.rule_version_id,
        rule_id=packet.rule_id,
        beneficiary=DISCOUNT,
        consumer_id=None,
        amount=order.discount,
        source=campaign_accounts(packet.merchant_id, packet.campaign_id).reserved,
        basis=f"red packet {packet.id} spent on this order",
        reason=EntryReason.RED_PACKET_REDEEM,
        red_packet_id=packet.id,
    )
    packet.reserved = packet.reserved - order.discount
    return packet


def _order_facts(order: _PaidOrder, packet: RedPacket | None) -> OrderFacts:
    packet_facts = None
    if packet is not None:
        packet_facts = RedPacketFacts(
            id=packet.id,
            face_value=packet.face_value,
            issuer="merchant" if packet.issuer_consumer_id is None else packet.issuer_consumer_id,
            issuer_rate_bp=packet.issuer_rate_bp,
            buyer_rate_bp=packet.buyer_rate_bp,
            min_spend=packet.min_spend,
            max_order_fen=packet.max_order,
            issuer_cap_fen=packet.issuer_cap,
            buyer_cap_fen=packet.buyer_cap,
            rule_id=packet.rule_id,
            rule_version_id=packet.rule_version_id,
        )
    return OrderFacts(
        order_id=order.id,
        consumer_id=order.consumer_id,
        total_fen=order.total,
        paid_fen=order.paid_amount,
        discount_fen=order.discount,
        red_packet=packet_facts,
        paid_at=order.paid_at or utcnow(),
    )


def _attributed(facts: OrderFacts, order: _PaidOrder) -> OrderFacts:
    """``facts`` with what invitation and distribution rules read: whether this is the buyer's first paid
    order, and the inviter and promoters as of the payment (live bindings, the shop's promoter code)."""
    paid_orders = db.session.scalar(
        select(func.count()).where(
            Order.merchant_id == order.merchant_id,
            Order.consumer_id == order.consumer_id,
            Order.status == OrderStatus.PAID,
        )
    )
    loaded = db.session.get(Order, order.id)
    assert loaded is not None
    attribution = attribution_for(loaded, at=facts.paid_at)
    return replace(
        facts,
        is_first_paid_order=paid_orders == 1,
        inviter_id=attribution.inviter_id,
        promoter_l1=attribution.promoter_l1,
        promoter_l2=attribution.promoter_l2,
    )


def _reads_attribution(rules: RuleSet) -> bool:
    return any(isinstance(rule, InviteRule | DistributionRule) for rule in rules.rules)


def _user_facts(campaign_id: int, consumer_id: int, now: datetime) -> UserFacts:
    """What the buyer was granted by this campaign in ``now``'s Beijing day, week and month (by the
    grants' booking time, the same windows the buyer counters use)."""
    day, week, month = beijing_day_start(now), beijing_week_start(now), beijing_month_start(now)

    # One statement for the three windows (a week can start in the previous month, or the other way).
    def since(start: datetime) -> Any:
        return func.coalesce(
            func.sum(case((RebateGrant.created_at >= start, RebateGrant.amount.cast(BigInteger)), else_=0)), 0
        )

    today, this_week, this_month = db.session.execute(
        select(since(day), since(week), since(month)).where(
            RebateGrant.campaign_id == campaign_id,
            RebateGrant.consumer_id == consumer_id,
            RebateGrant.beneficiary == Beneficiary.BUYER.value,
            RebateGrant.created_at >= min(week, month),
        )
    ).one()
    return UserFacts(
        granted_today=Money(int(today)),
        granted_this_week=Money(int(this_week)),
        granted_this_month=Money(int(this_month)),
    )


def _caps_per_user(caps: Caps) -> bool:
    return any(
        cap is not None for cap in (caps.per_user_day_fen, caps.per_user_week_fen, caps.per_user_month_fen)
    )


def _book_packet_legs(booking: _Booking, packet: RedPacket, facts: OrderFacts) -> Money:
    """The two-way legs, at the packet's frozen rates, paid from its reservation; the rest released
    (returned: what goes back to the campaign's budget)."""
    version = db.session.get(RuleVersion, packet.rule_version_id)
    assert version is not None
    accounts = campaign_accounts(packet.merchant_id, packet.campaign_id)
    rules = stored_rules(version.document)
    evaluation = evaluate(facts, UserFacts(), rules, now=facts.paid_at, budget_remaining=packet.reserved)
    booked_at = utcnow()
    coupon_reserves: list[Draft] = []
    to_coupons = Money(0)
    for grant in evaluation.rebates:
        if grant.rule_id != packet.rule_id or grant.beneficiary not in (
            Beneficiary.BUYER,
            Beneficiary.ISSUER_MERCHANT,
            Beneficiary.ISSUER_CONSUMER,
        ):
            continue
        if grant.beneficiary is Beneficiary.BUYER:
            as_coupon = booking.buyer_leg_as_coupon(
                rules, grant, campaign_id=packet.campaign_id, rule_version_id=packet.rule_version_id,
                spent=f"red-packet:{packet.id}",
            )  # fmt: skip
            if as_coupon is not None:
                coupon_reserves.append(as_coupon[0])  # the leg's share of the reservation moves to the coupon
                to_coupons += as_coupon[1]
                continue
        booking.grant(
            campaign_id=packet.campaign_id,
            rule_version_id=packet.rule_version_id,
            rule_id=grant.rule_id,
            beneficiary=grant.beneficiary.value,
            consumer_id=grant.beneficiary_id,
            amount=grant.amount,
            source=accounts.reserved,
            basis=grant.basis,
            reason=EntryReason.REBATE_PENDING,
            red_packet_id=packet.id,
            booked_at=booked_at,
            caps=None,  # a packet's legs were frozen (and reserved) when it was issued: counted, not capped
        )
        packet.reserved = packet.reserved - grant.amount
    if packet.reserved.fen > 0:
        booking.batch.add(
            Draft(
                key=f"rp-release:{packet.id}",
                reason=EntryReason.RELEASE,
                cause_type="red_packet",
                cause_id=str(packet.id),
                lines=[(accounts.reserved, -packet.reserved), (accounts.budget, packet.reserved)],
                rule_version_id=packet.rule_version_id,
                memo=f"release reservation of red packet {packet.id}",
            )
        )
    for reserve in coupon_reserves:
        booking.batch.add(reserve)
    released, packet.reserved = packet.reserved, Money(0)
    return released - to_coupons


def _book_campaign(booking: _Booking, campaign: _LiveCampaign, facts: _OrderFacts) -> None:
    """New grants of an active campaign's current rules, paid from (or reserved in) its budget."""
    order = booking.order
    rules = stored_rules(campaign.document)
    # One booking moment for the caps' facts, the grants and their counters, so all three agree.
    booked_at = utcnow()
    user = UserFacts()
    if _caps_per_user(rules.caps):
        # The grants read back, plus what this booking already gave the buyer from this campaign (a spent
        # packet's buyer leg, written with the rest at the end).
        booked, given = (
            _user_facts(campaign.id, order.consumer_id, booked_at),
            booking.given_to_buyer(campaign.id),
        )
        user = UserFacts(
            granted_today=booked.granted_today + given,
            granted_this_week=booked.granted_this_week + given,
            granted_this_month=booked.granted_this_month + given,
        )
    order_facts = facts.get(needs_attribution=_reads_attribution(rules))
    # The spent packet's legs were booked from its reservation; cash-back on a packet order still applies.
    evaluation = evaluate(
        order_facts,
        user,
        rules,
        now=order_facts.paid_at,
        budget_remaining=Money(campaign.budget_fen),
        redemption_legs=False,
    )
    exhausted = sum(1 for skipped in evaluation.skipped if skipped.reason is SkipReason.BUDGET_EXHAUSTED)
    if exhausted:
        count_skips(campaign.id, SkipReason.BUDGET_EXHAUSTED.value, exhausted)
    if not evaluation.grants:
        return  # nothing fired: this campaign's rows are not touched
    assert campaign.budget is not None and campaign.reserved is not None  # a grant needs a funded budget
    for grant in evaluation.grants:
        if isinstance(grant, IssueRedPacket):
            booking.issue(grant, campaign, valid_from=order_facts.paid_at)
        elif isinstance(grant, Rebate):
            booking.grant(
                campaign_id=campaign.id,
                rule_version_id=campaign.version_id,
                rule_id=grant.rule_id,
                beneficiary=grant.beneficiary.value,
                consumer_id=grant.beneficiary_id,
                amount=grant.amount,
                source=campaign.budget,
                basis=grant.basis,
                reason=EntryReason.REBATE_PENDING,
                booked_at=booked_at,
                caps=rules.caps,
            )


class _Booking:
    """What one paid order books, written at the end: red packets, ledger entries, grants, the buyer's cap
    counters, and last the balances (:class:`Batch`)."""

    def __init__(self, order: _PaidOrder) -> None:
        self.order = order
        self.batch = Batch(order.merchant_id)
        self.grants: list[dict[str, Any]] = []
        self.packets: list[tuple[dict[str, Any], Callable[[int], Draft]]] = []
        self.coupons: list[Callable[[], None]] = []  # rule rewards as coupons, issued in write()
        # (campaign, caps) → what the buyer was granted by this order and when: one counter take each
        self.counted: dict[tuple[int, Caps | None], tuple[Money, datetime]] = {}

    def grant(
        self,
        *,
        campaign_id: int,
        rule_version_id: int,
        rule_id: str,
        beneficiary: str,
        consumer_id: int | None,
        amount: Money,
        source: Account,
        basis: str,
        reason: EntryReason,
        red_packet_id: int | None = None,
        booked_at: datetime | None = None,
        caps: Caps | None = None,
        coupon_id: int | None = None,
    ) -> None:
        """Credit one grant (the entry key is the grant's natural key); zero grants are not booked.

        A buyer's grant is also counted in the campaign's day, week and month counters of that buyer, each
        within its cap (``caps``): the guard that two orders booked at once cannot pass a per-user cap.
        """
        if amount.fen <= 0:
            return
        order = self.order
        booked_at = booked_at or utcnow()
        self.batch.add(
            Draft(
                key=f"grant:{order.id}:{rule_version_id}:{rule_id}:{beneficiary}",
                reason=reason,
                cause_type="order",
                cause_id=str(order.id),
                lines=[(source, -amount), (self._destination(beneficiary, consumer_id), amount)],
                rule_version_id=rule_version_id,
                memo=basis[:255],
            )
        )
        if beneficiary == Beneficiary.BUYER.value and consumer_id is not None:
            counted, at = self.counted.get((campaign_id, caps), (Money(0), booked_at))
            self.counted[(campaign_id, caps)] = (counted + amount, at)
        self.grants.append(
            {
                "merchant_id": order.merchant_id,
                "campaign_id": campaign_id,
                "rule_version_id": rule_version_id,
                "rule_id": rule_id,
                "order_id": order.id,
                "red_packet_id": red_packet_id,
                "coupon_id": coupon_id,
                "beneficiary": beneficiary,
                "consumer_id": consumer_id,
                "amount": amount,
                "reversed": Money(0),
                "basis": basis[:255],
                "status": GrantStatus.AVAILABLE if beneficiary in _MERCHANT_SIDE else GrantStatus.PENDING,
                "created_at": booked_at,
            }
        )

    def issue(self, grant: IssueRedPacket, campaign: _LiveCampaign, *, valid_from: datetime) -> None:
        """A red packet (or a coupon, when the rule's reward is one) for the buyer, its worst-case cost
        moved from the budget to the reserve."""
        assert campaign.budget is not None and campaign.reserved is not None
        budget, reserved = campaign.budget, campaign.reserved
        key = f"issue:{self.order.id}:{campaign.version_id}:{grant.rule_id}"
        if grant.coupon_stock_id is not None:
            self._issue_coupon(grant, campaign, key)
            return
        row = granted_packet_row(
            grant,
            merchant_id=self.order.merchant_id,
            campaign_id=campaign.id,
            rule_version_id=campaign.version_id,
            valid_from=valid_from,
            source_order_id=self.order.id,
        )

        def reserve(packet_id: int) -> Draft:
            return Draft(
                key=key,
                reason=EntryReason.RESERVE,
                cause_type="red_packet",
                cause_id=str(packet_id),
                lines=[(budget, -grant.worst_case_cost), (reserved, grant.worst_case_cost)],
                rule_version_id=campaign.version_id,
                memo=f"reserve worst case of red packet {packet_id}",
            )

        self.packets.append((row, reserve))

    def _issue_coupon(self, grant: IssueRedPacket, campaign: _LiveCampaign, key: str) -> None:
        """The rule's reward as a WeChat Pay coupon: at :meth:`write`, a place taken in its stock (the
        stock's counter is the guard) and the reservation added to the batch; the send queued after commit."""
        assert grant.coupon_stock_id is not None and campaign.budget is not None
        assert campaign.reserved is not None
        budget, reserved = campaign.budget, campaign.reserved

        def issue() -> None:
            assert grant.coupon_stock_id is not None
            coupon_id = reserve_rule_coupon(
                merchant_id=self.order.merchant_id,
                campaign_id=campaign.id,
                rule_version_id=campaign.version_id,
                stock_id=grant.coupon_stock_id,
                grant=grant,
                issue_key=key,
            )
            if coupon_id is None:
                count_skips(campaign.id, "coupon stock cannot issue", 1)
                return
            self.batch.add(
                Draft(
                    key=f"coupon-reserve:{coupon_id}",
                    reason=EntryReason.RESERVE,
                    cause_type="coupon",
                    cause_id=str(coupon_id),
                    lines=[(budget, -grant.worst_case_cost), (reserved, grant.worst_case_cost)],
                    rule_version_id=campaign.version_id,
                    memo=f"reserve worst case of coupon {coupon_id}",
                )
            )

        self.coupons.append(issue)

    def buyer_leg_as_coupon(
        self, rules: RuleSet, leg: Rebate, *, campaign_id: int, rule_version_id: int | None, spent: str
    ) -> tuple[Draft, Money] | None:
        """The buyer's leg of a spent packet or coupon paid as one coupon, when its rule says so
        (``buyer_leg: coupon``) and the stock can carry it (this campaign's, running, its worst case within
        the leg): the coupon saved now, its reservation returned for the batch (after the spent one's
        release, from which it is taken) with the amount it moves. None: pay the leg in cash as usual."""
        rule = next((r for r in rules.rules if r.id == leg.rule_id), None)
        if (
            not isinstance(rule, TwoWayRule)
            or rule.buyer_leg is not LegPayment.COUPON
            or rule.buyer_leg_stock_id is None
            or leg.beneficiary_id is None
            or leg.amount.fen <= 0
        ):
            return None
        coupon = reserve_leg_coupon(
            merchant_id=self.order.merchant_id,
            campaign_id=campaign_id,
            stock_id=rule.buyer_leg_stock_id,
            consumer_id=leg.beneficiary_id,
            worth=leg.amount,
            issue_key=f"{BUYER_LEG_KEY}{self.order.id}:{spent}",
        )
        if coupon is None:
            count_skips(campaign_id, "buyer leg paid in cash: its coupon stock cannot carry it", 1)
            return None
        accounts = campaign_accounts(self.order.merchant_id, campaign_id)
        reserve = Draft(
            key=f"coupon-reserve:{coupon.id}",
            reason=EntryReason.RESERVE,
            cause_type="coupon",
            cause_id=str(coupon.id),
            lines=[(accounts.budget, -coupon.reserved), (accounts.reserved, coupon.reserved)],
            rule_version_id=rule_version_id,
            memo=f"reserve worst case of coupon {coupon.id}: the buyer's leg ({leg.amount}) of order {self.order.id}",
        )
        return reserve, coupon.reserved

    def given_to_buyer(self, campaign_id: int) -> Money:
        """What this booking has given the buyer from ``campaign_id`` so far (counted in its caps)."""
        return Money(
            sum(amount.fen for (campaign, _), (amount, _) in self.counted.items() if campaign == campaign_id)
        )

    def _destination(self, beneficiary: str, consumer_id: int | None) -> Account:
        if beneficiary in _MERCHANT_SIDE:
            return merchant_accounts(self.order.merchant_id).rebate
        assert consumer_id is not None
        if consumer_id == self.order.consumer_id and self.order.buyer_pending is not None:
            return self.order.buyer_pending
        return consumer_accounts(self.order.merchant_id, consumer_id).pending

    def write(self) -> None:
        for row, reserve in self.packets:
            self.batch.add(reserve(insert_packet(row)))
        for issue_coupon in self.coupons:
            issue_coupon()  # a stock's counter row is locked from here to the commit, as the balances
        if not self.batch:
            return
        if self.grants:
            db.session.execute(_INSERT_GRANT, self.grants)
        # Counter rows in campaign order (a packet's legs, uncapped, before its campaign's capped grants):
        # two bookings of one buyer take them in the same order, so they queue instead of deadlocking.
        for (campaign_id, caps), (amount, at) in sorted(
            self.counted.items(), key=lambda item: (item[0][0], item[0][1] is not None)
        ):
            _count_for_buyer(self.order.merchant_id, campaign_id, self.order.consumer_id, amount, at, caps)
        self.batch.write()  # the balances last: the budgets are locked from here to the commit


_INSERT_GRANT = insert(cast(Table, RebateGrant.__table__))


def _count_for_buyer(
    merchant_id: int, campaign_id: int, buyer_id: int, amount: Money, at: datetime, caps: Caps | None
) -> None:
    def cap(limit: Money | None) -> int:
        return limit.fen if caps is not None and limit is not None else UNLIMITED

    caps_or_none = caps or Caps()
    windows = [
        Window(BUYER_DAY_FEN, beijing_day_start(at), cap(caps_or_none.per_user_day_fen), campaign_id),
        Window(BUYER_WEEK_FEN, beijing_week_start(at), cap(caps_or_none.per_user_week_fen), campaign_id),
        Window(BUYER_MONTH_FEN, beijing_month_start(at), cap(caps_or_none.per_user_month_fen), campaign_id),
    ]
    if not take_all(merchant_id=merchant_id, subject_id=buyer_id, amount=amount.fen, windows=windows):
        # The rules, reading the buyer's grants, said this fits; the counters say a concurrent booking
        # took the room first. Nothing is kept: the payment's transaction is retried and re-evaluated.
        raise ConcurrentChange(f"a per-user cap of campaign {campaign_id} was reached by a concurrent order")


# ---------------------------------------------------------------- a coupon used on a paid order


class CouponUse(NamedTuple):
    """A coupon spent on an order, with the terms frozen when it was issued (see app.coupons)."""

    id: int
    merchant_id: int
    campaign_id: int
    rule_version_id: int
    rule_id: str
    face_value: Money
    min_spend: Money
    issuer_rate_bp: int
    buyer_rate_bp: int
    max_order: Money
    issuer_cap: Money | None
    buyer_cap: Money | None
    reserved: Money  # what the campaign's reserve holds for it
    cost: Money  # what the coupon cost the merchant on this order (its contribution)


def book_coupon_use(use: CouponUse, order_id: int) -> bool:
    """Book a used coupon like a spent red packet: its cost paid to the merchant, the two-way legs at its
    frozen rates (pending, settled and clawed back like every grant), the rest of its reservation released.

    All of it from the coupon's own reservation, in one ledger :class:`Batch` (balances last); the whole
    reservation is spent or released. False (nothing booked) when the order is not paid (yet). The caller guards "once"
    (the coupon's ``booked_at``); the grants' unique ``(coupon_id, order_id, beneficiary)`` backs it up.
    """
    row = db.session.execute(_PAID_ORDER, {"order": order_id}).one_or_none()
    if row is None:
        return False
    order_id, merchant_id, buyer, total, paid, discount, paid_at, pending_id, _ = row
    order = _PaidOrder(
        order_id,
        merchant_id,
        buyer,
        total,
        paid,
        discount,
        paid_at,
        buyer_pending=None if pending_id is None else AccountRef(pending_id, merchant_id),
    )
    booking = _Booking(order)
    accounts = campaign_accounts(use.merchant_id, use.campaign_id)
    left = use.reserved
    cost = min(use.cost, left)
    booked_at = utcnow()
    booking.grant(
        campaign_id=use.campaign_id,
        rule_version_id=use.rule_version_id,
        rule_id=use.rule_id,
        beneficiary=COUPON_DISCOUNT,
        consumer_id=None,
        amount=cost,
        source=accounts.reserved,
        basis=f"coupon {use.id} cut {cost} from this order",
        reason=EntryReason.RED_PACKET_REDEEM,
        booked_at=booked_at,
        coupon_id=use.id,
    )
    left -= cost
    facts = _order_facts(order, None)
    spent = RedPacketFacts(
        id=use.id,
        face_value=use.face_value,
        issuer="merchant",
        issuer_rate_bp=use.issuer_rate_bp,
        buyer_rate_bp=use.buyer_rate_bp,
        min_spend=use.min_spend,
        max_order_fen=use.max_order,
        issuer_cap_fen=use.issuer_cap,
        buyer_cap_fen=use.buyer_cap,
        rule_id=use.rule_id,
        rule_version_id=use.rule_version_id,
    )
    # WeChat applied the coupon to what we asked it to charge (the order's paid amount): the legs count
    # the order's total, as a red packet's do.
    evaluation = evaluate(
        replace(facts, red_packet=spent), UserFacts(), RuleSet(()), now=facts.paid_at, budget_remaining=left
    )
    # A rule's coupon may pay its buyer's leg as a coupon too (its rule version is immutable: frozen terms).
    version = db.session.get(RuleVersion, use.rule_version_id) if use.rule_version_id is not None else None
    rules = stored_rules(version.document) if version is not None else RuleSet(())
    coupon_reserves: list[Draft] = []
    for leg in evaluation.rebates:
        if leg.beneficiary is Beneficiary.BUYER:
            as_coupon = booking.buyer_leg_as_coupon(
                rules, leg, campaign_id=use.campaign_id, rule_version_id=use.rule_version_id,
                spent=f"coupon:{use.id}",
            )  # fmt: skip
            if as_coupon is not None:
                coupon_reserves.append(as_coupon[0])  # taken from what this coupon's release gives back
                continue
        booking.grant(
            campaign_id=use.campaign_id,
            rule_version_id=use.rule_version_id,
            rule_id=use.rule_id,
            beneficiary=leg.beneficiary.value,
            consumer_id=leg.beneficiary_id,
            amount=leg.amount,
            source=accounts.reserved,
            basis=leg.basis.replace(f"red packet {use.id}", f"coupon {use.id}"),
            reason=EntryReason.REBATE_PENDING,
            booked_at=booked_at,
            coupon_id=use.id,
        )
        left -= leg.amount
    if left.fen > 0:
        booking.batch.add(
            Draft(
                key=f"coupon-release:{use.id}:{order.id}",
                reason=EntryReason.RELEASE,
                cause_type="coupon",
                cause_id=str(use.id),
                lines=[(accounts.reserved, -left), (accounts.budget, left)],
                rule_version_id=use.rule_version_id,
                memo=f"release reservation of coupon {use.id}",
            )
        )
    for reserve in coupon_reserves:
        booking.batch.add(reserve)
    verdict = _risk(booking, None)
    booking.write()
    if verdict is not None:
        verdict.hold_if_needed()
    return True


# ---------------------------------------------------------------- order.closed


def on_order_closed(event: Event) -> None:
    release_from_order(event.subject_id)


# ---------------------------------------------------------------- settlement


def settle_due(now: datetime | None = None, limit: int = 500) -> int:
    """Move pending grants to available once the order is received, its merchant's after-sales window
    has passed, no after-sale is open and no refund is in flight. Debt is repaid first."""
    now = now or utcnow()
    rows = db.session.execute(
        select(RebateGrant, Order, Merchant)
        .join(Order, Order.id == RebateGrant.order_id)
        .join(Merchant, Merchant.id == Order.merchant_id)
        .where(
            RebateGrant.status == GrantStatus.PENDING,
            Order.received_at.is_not(None),
            not_held(RebateGrant.order_id),  # a reward under risk review settles once approved
        )
        .order_by(RebateGrant.id)
        .limit(limit)
        # skip_locked only spreads concurrent sweeps over different grants; _settle's conditional
        # UPDATE is what settles a grant once, and not after a clawback changed it.
        .with_for_update(of=RebateGrant, skip_locked=True)
    ).all()
    settled = 0
    for grant, order, merchant in rows:
        if not settlement_due(order, merchant.after_sales_window_days, now):
            continue
        _settle(grant)
        settled += 1
    return settled


def settlement_due(order: Order, window_days: int, now: datetime) -> bool:
    if order.received_at is None or order.open_after_sale_ids or order.refund_committed != order.refunded:
        return False
    last = max(order.received_at, order.last_after_sale_closed_at or order.received_at)
    return last + timedelta(days=window_days) <= now


def available_from(order: Order, window_days: int) -> datetime | None:
    """When a pending grant of ``order`` becomes available, if known (received, nothing open)."""
    if order.received_at is None or order.open_after_sale_ids:
        return None
    last = max(order.received_at, order.last_after_sale_closed_at or order.received_at)
    return last + timedelta(days=window_days)


def _settle(grant: RebateGrant) -> None:
    assert grant.consumer_id is not None
    net = grant.amount - grant.reversed
    # The guard: pending → available only if no clawback changed the grant since it was read (a refund
    # racing the sweep); otherwise the next sweep settles what is left.
    if not guarded_update(
        RebateGrant,
        grant.id,
        RebateGrant.status == GrantStatus.PENDING,
        RebateGrant.reversed == grant.reversed,
        status=GrantStatus.AVAILABLE,
        settled_at=utcnow(),
    ):
        return
    wallet = consumer_accounts(grant.merchant_id, grant.consumer_id)
    # Read the debt under the wallet's locks (taken in id order, as the ledger takes them), so on
    # PostgreSQL a withdrawal netting the same debt waits rather than making this repayment stale (on
    # SQLite the transaction is serial). This read-then-write relies on that: a stale debt would repay
    # too much into the debt bucket (no money lost, but in the wrong bucket); pending itself is guarded
    # by the ledger's conditional UPDATE, and the grant by the conditional settle above.
    db.session.scalars(
        select(LedgerAccount)
        .where(LedgerAccount.id.in_([account.id for account in wallet]))
        .order_by(LedgerAccount.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    owed = -wallet.debt.balance if wallet.debt.balance.is_negative else Money(0)
    repay = min(net, owed)
    lines = [(wallet.pending, -net), (wallet.debt, repay), (wallet.available, net - repay)]
    if net.fen > 0:
        post_entry(
            key=f"settle:{grant.id}",
            reason=EntryReason.SETTLE,
            cause_type="order",
            cause_id=str(grant.order_id),
            lines=lines,
            merchant_id=grant.merchant_id,
            rule_version_id=grant.rule_version_id,
            memo="after-sales window passed" + (f"; {repay.fen} fen repaid debt" if repay.fen else ""),
        )
    campaign = db.session.get(Campaign, grant.campaign_id)
    if campaign is not None and campaign.pays_out_as_cash and (net - repay).fen > 0:
        _pay_out_as_cash(grant, net - repay)


def _pay_out_as_cash(grant: RebateGrant, amount: Money) -> None:
    """A cash campaign pays a settled rebate out at once, through the same withdrawal/payout path.

    When the merchant's withdrawal policy refuses it (minimum, daily limit, fee) the money simply
    stays available for the consumer to withdraw later.
    """
    assert grant.consumer_id is not None
    try:
        with db.session.begin_nested():
            request_withdrawal(
                merchant_id=grant.merchant_id,
                consumer_id=grant.consumer_id,
                amount=amount,
                idempotency_key=f"cash-rebate:{grant.id}",
            )
    except DomainError as exc:
        logger.info("cash rebate of grant %s stays available: %s", grant.id, exc.message)


# ---------------------------------------------------------------- clawback (refund.succeeded)


def on_refund_succeeded(event: Event) -> None:
    """Reverse each grant of the order pro rata to the refunded share (cumulative, floor)."""
    order_id = int(event.payload["order_id"])
    refunded = int(event.payload["refunded_total_fen"])
    paid = int(event.payload["paid_fen"])
    refund_id = event.subject_id
    # The lock queues a concurrent settlement on PostgreSQL; the guard is _claw_back's conditional UPDATE.
    for grant in db.session.scalars(
        select(RebateGrant).where(RebateGrant.order_id == order_id).order_by(RebateGrant.id).with_for_update()
    ):
        target = grant.amount.prorate(min(refunded, paid), paid) if paid else grant.amount
        delta = target - grant.reversed
        if delta.fen > 0:
            _claw_back(grant, delta, refund_id)


def _claw_back(grant: RebateGrant, delta: Money, refund_id: int) -> None:
    budget = campaign_accounts(grant.merchant_id, grant.campaign_id).budget
    key = f"clawback:{grant.id}:refund:{refund_id}"
    memo = f"reversed: refund {refund_id}"
    lines: list[tuple[LedgerAccount, Money]]
    if grant.beneficiary in _MERCHANT_SIDE:
        rebate = merchant_accounts(grant.merchant_id).rebate
        taken = min(delta, rebate.balance) if not rebate.balance.is_negative else Money(0)
        if taken != delta:
            flag_for_review(
                merchant_id=grant.merchant_id,
                kind="clawback_shortfall",
                reason="merchant rebate balance cannot cover a clawback",
                reference=key,
                details={"grant_id": grant.id, "short_fen": (delta - taken).fen},
            )
        lines = [(rebate, -taken), (budget, taken)]
        delta = taken
    else:
        assert grant.consumer_id is not None
        wallet = consumer_accounts(grant.merchant_id, grant.consumer_id)
        if grant.status is GrantStatus.PENDING:
            lines = [(wallet.pending, -delta), (budget, delta)]
        else:
            # Already withdrawable (or withdrawn): take what is available, the shortfall becomes debt.
            available = wallet.available.balance
            taken = min(delta, available) if not available.is_negative else Money(0)
            lines = [(wallet.available, -taken), (wallet.debt, -(delta - taken)), (budget, delta)]
    if delta.fen > 0:
        # The guard: the grant is still as read (status and reversed); a settlement or another refund
        # that changed it meanwhile makes this refund's transaction fail and be redelivered, re-read.
        if not guarded_update(
            RebateGrant,
            grant.id,
            RebateGrant.status == grant.status,
            RebateGrant.reversed == grant.reversed,
            reversed=grant.reversed + delta,
        ):
            raise ConcurrentChange(f"rebate grant {grant.id} changed during a clawback")
        post_entry(
            key=key,
            reason=EntryReason.CLAWBACK,
            cause_type="refund",
            cause_id=str(refund_id),
            lines=lines,
            merchant_id=grant.merchant_id,
            rule_version_id=grant.rule_version_id,
            memo=memo,
        )
