"""Pure rule evaluation: an order's facts and a rule set in, grants out.

No database, no Flask, no clock, no I/O: :func:`evaluate` is a deterministic function of its arguments.
Rounding is the product's one rule (floor to the fen, through :class:`~app.core.money.Money`).

Choices the callers rely on (also stated where they are implemented):

* Order of work (and of the output): the legs of a red packet spent on this order first (they were
  reserved when it was issued), then the rules by priority (higher first) then id; legs in the order
  issuer/buyer, inviter/invitee, level 1/level 2.
* Stacking: the first *applicable* exclusive rule in that order applies and later applicable exclusive
  rules are skipped; combinable rules always add up. Applicability ignores budget and caps.
* Thresholds (``*min_order_fen``, ladder tiers, the two-way trigger) compare the order **total**;
  ratio, ladder, cash-back and distribution rates apply to the amount **paid**; the two-way legs apply
  to the total (as the seeds say: "a share of that purchase"), counted up to ``max_order_fen``.
  An order that spends a packet may itself reach the trigger and earn a new one (each is reserved).
* Multipliers: active when ``starts_at <= order.paid_at < ends_at`` (the purchase time, so late
  callbacks and replays give the same answer). Exclusive multipliers: only the highest-priority active
  one per rule; combinable ones compound. A multiplier of a two-way rule boosts the rates *frozen into
  the packets it issues* (so their reserved worst case covers it), never the legs of a packet issued
  earlier. Boosted amounts are floored once, on the exact product.
* Caps (set-level, after multipliers): per order bounds all rebates of this order; per user day / week /
  month bound what the buyer receives (any rebate whose beneficiary is the buyer). A rebate over a cap
  is **reduced** to what the cap leaves (and ``basis`` says so); with nothing left it is skipped
  ("cap reached"). Issued red packets are not rebates and use no cap.
* Budget: every grant costs its amount (a packet its ``worst_case_cost``); one that does not fit in what
  is left is **skipped whole** ("budget exhausted"), never part-paid; later, cheaper grants may still fit.
  When the order spends a red packet, pass ``budget_remaining`` with that packet's reservation already
  released: its legs come first and, by construction, fit in it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final, Literal, NamedTuple

from app.core.money import BASIS_POINTS_PER_WHOLE, Money
from app.rebates.ruledoc import (
    AnyRule,
    BaseRule,
    Caps,
    CashbackRule,
    DistributionRule,
    FixedRule,
    InviteRule,
    LadderRule,
    LadderTier,
    MultiplierRule,
    RatioRule,
    Reward,
    Rule,
    RuleDocumentError,
    RuleKind,
    RuleSet,
    Stacking,
    TwoWayRule,
    load_rules,
)

__all__ = [
    "MERCHANT",
    "AnyRule",
    "Beneficiary",
    "Caps",
    "CashbackRule",
    "ConsumerId",
    "DistributionRule",
    "Evaluation",
    "FixedRule",
    "Grant",
    "InviteRule",
    "IssueRedPacket",
    "LadderRule",
    "LadderTier",
    "MultiplierRule",
    "OrderFacts",
    "RatioRule",
    "Rebate",
    "RedPacketFacts",
    "Rule",
    "RuleDocumentError",
    "RuleKind",
    "RuleSet",
    "SkipReason",
    "Skipped",
    "Stacking",
    "TwoWayRule",
    "UserFacts",
    "evaluate",
    "load_rules",
    "worst_case_cost",
]

ConsumerId = int
MERCHANT: Final = "merchant"


class Beneficiary(StrEnum):
    """Who a rebate is for. Two promoter levels and no third: the limit is in the type."""

    BUYER = "buyer"
    ISSUER_MERCHANT = "issuer_merchant"
    ISSUER_CONSUMER = "issuer_consumer"
    INVITER = "inviter"
    INVITEE = "invitee"
    PROMOTER_L1 = "promoter_l1"
    PROMOTER_L2 = "promoter_l2"


class SkipReason(StrEnum):
    """Why a rule (or one leg of it) granted nothing; shown in campaign stats and previews."""

    BUDGET_EXHAUSTED = "budget exhausted"
    CAP_REACHED = "cap reached"
    BELOW_MINIMUM = "below minimum"
    EXCLUSIVE_APPLIED = "exclusive rule with higher priority applied"
    NOT_FIRST_ORDER = "not the first paid order"
    NO_INVITER = "no inviter"
    SELF_INVITE = "inviter is the buyer"
    NO_PROMOTER = "no promoter"
    NO_RED_PACKET = "no red packet spent"
    OUTSIDE_WINDOW = "outside its window"
    ZERO = "amount rounds to zero"


class Skipped(NamedTuple):
    rule_id: str
    reason: SkipReason


def _require_aware(moment: datetime, what: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime")


def _require_non_negative(what: str, *amounts: Money | None) -> None:
    for amount in amounts:
        if amount is not None and amount.is_negative:
            raise ValueError(f"{what} cannot be negative")


# ---------------------------------------------------------------- grants out


@dataclass(frozen=True, slots=True, kw_only=True)
class IssueRedPacket:
    """Issue a red packet to the buyer, with its rates frozen; the campaign reserves ``worst_case_cost``."""

    rule_id: str
    recipient_id: ConsumerId
    face_value: Money
    min_spend: Money
    valid_until: datetime
    issuer_rate_bp: int
    buyer_rate_bp: int
    max_order_fen: Money
    issuer_cap_fen: Money | None
    buyer_cap_fen: Money | None
    worst_case_cost: Money
    coupon_stock_id: int | None = None  # the reward is a WeChat Pay coupon of this stock, not a red packet

    @property
    def cost(self) -> Money:
        return self.worst_case_cost


@dataclass(frozen=True, slots=True, kw_only=True)
class Rebate:
    """Money earned by one beneficiary (``beneficiary_id`` None for the merchant), with a readable basis."""

    rule_id: str
    beneficiary: Beneficiary
    beneficiary_id: ConsumerId | None
    amount: Money
    basis: str

    @property
    def cost(self) -> Money:
        return self.amount


Grant = IssueRedPacket | Rebate


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What an order earns: grants in evaluation order, and every rule (or leg) that granted nothing."""

    grants: list[Grant]
    skipped: list[Skipped]

    @property
    def rebates(self) -> list[Rebate]:
        return [grant for grant in self.grants if isinstance(grant, Rebate)]

    @property
    def issued(self) -> list[IssueRedPacket]:
        return [grant for grant in self.grants if isinstance(grant, IssueRedPacket)]

    @property
    def cost(self) -> Money:
        """What the grants take from the budget: rebates plus the worst case of issued packets."""
        return sum((grant.cost for grant in self.grants), Money.zero())


# ---------------------------------------------------------------- facts in


@dataclass(frozen=True, slots=True, kw_only=True)
class RedPacketFacts:
    """The red packet spent on an order, with the rates and limits frozen when it was issued."""

    id: int
    face_value: Money
    issuer: Literal["merchant"] | ConsumerId
    issuer_rate_bp: int
    buyer_rate_bp: int
    min_spend: Money
    max_order_fen: Money
    issuer_cap_fen: Money | None = None
    buyer_cap_fen: Money | None = None
    rule_id: str
    rule_version_id: int | None = None

    def __post_init__(self) -> None:
        _require_non_negative(
            "red packet amounts",
            self.face_value,
            self.min_spend,
            self.max_order_fen,
            self.issuer_cap_fen,
            self.buyer_cap_fen,
        )
        if self.issuer_rate_bp < 0 or self.buyer_rate_bp < 0:
            raise ValueError("red packet rates cannot be negative")

    @classmethod
    def from_issue(
        cls,
        grant: IssueRedPacket,
        *,
        id: int,
        issuer: Literal["merchant"] | ConsumerId = MERCHANT,
        rule_version_id: int | None = None,
    ) -> RedPacketFacts:
        """The facts of a packet created from ``grant``: the same frozen rates, limits and rule."""
        return cls(
            id=id,
            face_value=grant.face_value,
            issuer=issuer,
            issuer_rate_bp=grant.issuer_rate_bp,
            buyer_rate_bp=grant.buyer_rate_bp,
            min_spend=grant.min_spend,
            max_order_fen=grant.max_order_fen,
            issuer_cap_fen=grant.issuer_cap_fen,
            buyer_cap_fen=grant.buyer_cap_fen,
            rule_id=grant.rule_id,
            rule_version_id=rule_version_id,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderFacts:
    """A paid order as the rules see it. Two promoter fields and no list: a third level cannot be said."""

    order_id: int
    consumer_id: ConsumerId
    total_fen: Money
    paid_fen: Money
    discount_fen: Money = field(default_factory=Money.zero)
    red_packet: RedPacketFacts | None = None
    is_first_paid_order: bool = False
    inviter_id: ConsumerId | None = None
    promoter_l1: ConsumerId | None = None
    promoter_l2: ConsumerId | None = None
    paid_at: datetime

    def __post_init__(self) -> None:
        _require_non_negative("order amounts", self.total_fen, self.paid_fen, self.discount_fen)
        if self.paid_fen + self.discount_fen != self.total_fen:
            raise ValueError("paid_fen + discount_fen must equal total_fen")
        if self.promoter_l2 is not None and self.promoter_l1 is None:
            raise ValueError("a level-2 promoter needs a level-1 promoter")
        if self.promoter_l2 is not None and self.promoter_l2 == self.promoter_l1:
            raise ValueError("the two promoter levels must be different consumers")
        _require_aware(self.paid_at, "paid_at")


@dataclass(frozen=True, slots=True, kw_only=True)
class UserFacts:
    """What the buyer was already granted under this rule set, for the per-user caps."""

    granted_today: Money = field(default_factory=Money.zero)
    granted_this_week: Money = field(default_factory=Money.zero)
    granted_this_month: Money = field(default_factory=Money.zero)

    def __post_init__(self) -> None:
        _require_non_negative(
            "granted amounts", self.granted_today, self.granted_this_week, self.granted_this_month
        )


# ---------------------------------------------------------------- arithmetic and wording


def _scaled(base: Money, rates_bp: Sequence[int]) -> Money:
    """``base`` × each rate / 10 000, rounded down once: the exact product, floored."""
    scaled = base * math.prod(rates_bp)
    for _ in rates_bp:
        # floor(floor(x / a) / b) == floor(x / (a * b)) for positive integers: dividing step by step
        # still rounds the exact value down exactly once (a boost never loses an extra fen).
        scaled = scaled.prorate(1, BASIS_POINTS_PER_WHOLE)
    return scaled


def _boosted_rate(rate_bp: int, factors_bp: Sequence[int]) -> int:
    # A frozen packet rate must be whole basis points, so a boosted rate is floored too.
    return rate_bp * math.prod(factors_bp) // BASIS_POINTS_PER_WHOLE ** len(factors_bp)


def _leg(base: Money, rate_bp: int, cap: Money | None) -> Money:
    amount = base.apply_rate(rate_bp)
    return amount if cap is None else min(amount, cap)


def worst_case_cost(
    face_value: Money,
    max_order_fen: Money,
    issuer_rate_bp: int,
    buyer_rate_bp: int,
    issuer_cap_fen: Money | None = None,
    buyer_cap_fen: Money | None = None,
) -> Money:
    """The most a red packet can ever cost: its face value plus both legs at the max order, after caps."""
    return (
        face_value
        + _leg(max_order_fen, issuer_rate_bp, issuer_cap_fen)
        + _leg(max_order_fen, buyer_rate_bp, buyer_cap_fen)
    )


def _percent(rate_bp: int) -> str:
    whole, hundredths = divmod(rate_bp, 100)
    return f"{whole}.{hundredths:02d}".rstrip("0").rstrip(".") + "%"


def _factor(factor_bp: int) -> str:
    whole, rest = divmod(factor_bp, BASIS_POINTS_PER_WHOLE)
    return f"{whole}.{rest:04d}".rstrip("0").rstrip(".")


def _boost_note(boosts: Sequence[MultiplierRule]) -> str:
    return "".join(f" ×{_factor(boost.factor_bp)} ({boost.id})" for boost in boosts)


# ---------------------------------------------------------------- what each rule proposes


def _rebate(
    rule_id: str, beneficiary: Beneficiary, who: ConsumerId | None, amount: Money, basis: str
) -> Rebate:
    return Rebate(rule_id=rule_id, beneficiary=beneficiary, beneficiary_id=who, amount=amount, basis=basis)


def _redemption(packet: RedPacketFacts, order: OrderFacts) -> list[Rebate] | SkipReason:
    """The two legs of a spent red packet, at its frozen rates, on the order total up to its max order."""
    if order.total_fen < packet.min_spend:
        return SkipReason.BELOW_MINIMUM
    base = min(order.total_fen, packet.max_order_fen)
    counted = f" (order {order.total_fen} counted up to {base})" if base < order.total_fen else ""
    if packet.issuer == MERCHANT:
        issuer, issuer_id = Beneficiary.ISSUER_MERCHANT, None
    else:
        issuer, issuer_id = Beneficiary.ISSUER_CONSUMER, packet.issuer
    legs = [
        (issuer, issuer_id, packet.issuer_rate_bp, packet.issuer_cap_fen),
        (Beneficiary.BUYER, order.consumer_id, packet.buyer_rate_bp, packet.buyer_cap_fen),
    ]
    rebates = []
    for beneficiary, who, rate_bp, cap in legs:
        amount = _leg(base, rate_bp, cap)
        limited = f", leg cap {cap}" if amount < base.apply_rate(rate_bp) else ""
        basis = f"{_percent(rate_bp)} of {base}{counted}{limited}, red packet {packet.id}"
        rebates.append(_rebate(packet.rule_id, beneficiary, who, amount, basis))
    return rebates


def _issue(
    rule: TwoWayRule, order: OrderFacts, boosts: Sequence[MultiplierRule], now: datetime
) -> list[Grant]:
    factors = [boost.factor_bp for boost in boosts]
    issuer_rate = _boosted_rate(rule.issuer_rate_bp, factors)
    buyer_rate = _boosted_rate(rule.buyer_rate_bp, factors)
    packet = IssueRedPacket(
        rule_id=rule.id,
        recipient_id=order.consumer_id,
        face_value=rule.packet_value_fen,
        min_spend=rule.packet_min_spend_fen,
        valid_until=now + timedelta(days=rule.packet_valid_days),
        issuer_rate_bp=issuer_rate,
        buyer_rate_bp=buyer_rate,
        max_order_fen=rule.max_order_fen,
        issuer_cap_fen=rule.issuer_cap_fen,
        buyer_cap_fen=rule.buyer_cap_fen,
        worst_case_cost=worst_case_cost(
            rule.packet_value_fen,
            rule.max_order_fen,
            issuer_rate,
            buyer_rate,
            rule.issuer_cap_fen,
            rule.buyer_cap_fen,
        ),
        coupon_stock_id=rule.coupon_stock_id if rule.reward is Reward.COUPON else None,
    )
    return [packet]


def _share(
    rule: BaseRule,
    rate_bp: int,
    base: Money,
    boosts: Sequence[MultiplierRule],
    what: str,
    beneficiary: Beneficiary,
    who: ConsumerId,
) -> Rebate:
    """``rate_bp`` of ``base``, boosted by the active multipliers, floored once."""
    amount = _scaled(base, [rate_bp, *(boost.factor_bp for boost in boosts)])
    basis = f"{_percent(rate_bp)} of {base}{what}{_boost_note(boosts)}"
    return _rebate(rule.id, beneficiary, who, amount, basis)


def _propose(
    rule: Rule, order: OrderFacts, boosts: Sequence[MultiplierRule], now: datetime
) -> list[Grant] | SkipReason:
    """What one rule would grant on this order before caps and budget, or why it grants nothing."""
    buyer = order.consumer_id
    grants: list[Grant]
    match rule:
        case TwoWayRule():
            if order.total_fen < rule.trigger_min_order_fen:
                return SkipReason.BELOW_MINIMUM
            return _issue(rule, order, boosts, now)
        case RatioRule():
            if order.total_fen < rule.min_order_fen:
                return SkipReason.BELOW_MINIMUM
            grants = [_share(rule, rule.rate_bp, order.paid_fen, boosts, " paid", Beneficiary.BUYER, buyer)]
        case LadderRule():
            reached = [tier for tier in rule.tiers if order.total_fen >= tier.min_order_fen]
            if not reached:
                return SkipReason.BELOW_MINIMUM
            tier = reached[-1]
            what = f" paid (tier from {tier.min_order_fen})"
            grants = [_share(rule, tier.rate_bp, order.paid_fen, boosts, what, Beneficiary.BUYER, buyer)]
        case FixedRule():
            if order.total_fen < rule.min_order_fen:
                return SkipReason.BELOW_MINIMUM
            amount = _scaled(rule.amount_fen, [boost.factor_bp for boost in boosts])
            basis = f"fixed {rule.amount_fen}{_boost_note(boosts)}"
            grants = [_rebate(rule.id, Beneficiary.BUYER, buyer, amount, basis)]
        case CashbackRule():
            if rule.requires_red_packet and order.red_packet is None:
                return SkipReason.NO_RED_PACKET
            grants = [_share(rule, rule.rate_bp, order.paid_fen, boosts, " paid", Beneficiary.BUYER, buyer)]
        case InviteRule():
            if not order.is_first_paid_order:
                return SkipReason.NOT_FIRST_ORDER
            if order.inviter_id is None:
                return SkipReason.NO_INVITER
            if order.inviter_id == buyer:
                return SkipReason.SELF_INVITE
            factors = [boost.factor_bp for boost in boosts]
            note = _boost_note(boosts)
            grants = [
                _rebate(
                    rule.id,
                    Beneficiary.INVITER,
                    order.inviter_id,
                    _scaled(rule.inviter_fen, factors),
                    f"fixed {rule.inviter_fen} for inviting{note}",
                ),
                _rebate(
                    rule.id,
                    Beneficiary.INVITEE,
                    buyer,
                    _scaled(rule.invitee_fen, factors),
                    f"fixed {rule.invitee_fen} on a first order{note}",
                ),
            ]
        case DistributionRule():
            if order.promoter_l1 is None:
                return SkipReason.NO_PROMOTER
            paid = order.paid_fen
            level1 = Beneficiary.PROMOTER_L1, order.promoter_l1
            grants = [_share(rule, rule.level1_bp, paid, boosts, " paid, level 1", *level1)]
            if order.promoter_l2 is not None:
                level2 = Beneficiary.PROMOTER_L2, order.promoter_l2
                grants.append(_share(rule, rule.level2_bp, paid, boosts, " paid, level 2", *level2))
    # A zero grant would be noise in the ledger and the wallet timeline.
    grants = [grant for grant in grants if grant.cost]
    return grants or SkipReason.ZERO


def _boosts_for(rule_id: str, active: Sequence[MultiplierRule]) -> list[MultiplierRule]:
    """The active multipliers of one rule: the first exclusive one (by priority) and every combinable one."""
    naming = [boost for boost in active if rule_id in boost.applies_to]
    exclusive = next((boost for boost in naming if boost.stacking is Stacking.EXCLUSIVE), None)
    return [boost for boost in naming if boost.stacking is Stacking.COMBINABLE or boost is exclusive]


# ---------------------------------------------------------------- caps and budget


class _Purse:
    """What is left of the budget and of each cap while the grants of one order are settled."""

    def __init__(self, caps: Caps, user: UserFacts, buyer: ConsumerId, budget: Money) -> None:
        self.budget = budget
        self.buyer = buyer
        self.order_left: dict[str, Money] = {}
        self.user_left: dict[str, Money] = {}
        if caps.per_order_fen is not None:
            self.order_left["per-order cap"] = caps.per_order_fen
        for label, cap, granted in (
            ("per-user day cap", caps.per_user_day_fen, user.granted_today),
            ("per-user week cap", caps.per_user_week_fen, user.granted_this_week),
            ("per-user month cap", caps.per_user_month_fen, user.granted_this_month),
        ):
            if cap is not None:
                self.user_left[label] = max(cap - granted, Money.zero())

    def settle(self, grant: Grant) -> Grant | SkipReason:
        """The grant as paid (a rebate reduced by caps), or why it cannot be paid at all."""
        if isinstance(grant, IssueRedPacket):
            if grant.worst_case_cost > self.budget:
                return SkipReason.BUDGET_EXHAUSTED
            self.budget -= grant.worst_case_cost
            return grant
        limits = dict(self.order_left)
        if grant.beneficiary_id == self.buyer:
            limits |= self.user_left
        amount, binding = grant.amount, None
        for label, left in limits.items():
            if left < amount:
                amount, binding = left, label
        if not amount:
            return SkipReason.CAP_REACHED
        if amount > self.budget:
            return SkipReason.BUDGET_EXHAUSTED
        self.budget -= amount
        for label in limits:
            pool = self.order_left if label in self.order_left else self.user_left
            pool[label] -= amount
        if binding is not None:
            grant = replace(
                grant, amount=amount, basis=f"{grant.basis}; reduced to {amount} by the {binding}"
            )
        return grant


# ---------------------------------------------------------------- the evaluation


def evaluate(
    order: OrderFacts,
    user: UserFacts,
    rules: RuleSet,
    *,
    now: datetime,
    budget_remaining: Money,
    redemption_legs: bool = True,
) -> Evaluation:
    """Everything ``order`` earns under ``rules``: deterministic, never negative, within caps and budget.

    ``now`` dates issued packets (``valid_until``); multiplier windows are tested against ``order.paid_at``.
    ``redemption_legs=False`` leaves out the spent packet's two legs (booked from its own reservation)
    while rules that depend on a packet having been spent still see it.
    """
    _require_aware(now, "now")
    _require_non_negative("budget_remaining", budget_remaining)
    purse = _Purse(rules.caps, user, order.consumer_id, budget_remaining)
    grants: list[Grant] = []
    skipped: list[Skipped] = []

    def settle(rule_id: str, proposal: Sequence[Grant]) -> None:
        for grant in proposal:
            outcome = purse.settle(grant)
            if isinstance(outcome, SkipReason):
                skipped.append(Skipped(rule_id, outcome))
            else:
                grants.append(outcome)

    if order.red_packet is not None and redemption_legs:
        # The packet's legs were reserved when it was issued: they come before any rule of today's set.
        legs = _redemption(order.red_packet, order)
        if isinstance(legs, SkipReason):
            skipped.append(Skipped(order.red_packet.rule_id, legs))
        else:
            for leg in legs:
                if leg.amount:
                    settle(leg.rule_id, [leg])
                else:
                    skipped.append(Skipped(leg.rule_id, SkipReason.ZERO))

    active = [boost for boost in rules.multipliers if boost.active_at(order.paid_at)]
    exclusive_applied = False
    for rule in rules.rules:
        if isinstance(rule, MultiplierRule):
            if not rule.active_at(order.paid_at):
                skipped.append(Skipped(rule.id, SkipReason.OUTSIDE_WINDOW))
            continue
        proposal = _propose(rule, order, _boosts_for(rule.id, active), now)
        if isinstance(proposal, SkipReason):
            skipped.append(Skipped(rule.id, proposal))
            continue
        if rule.stacking is Stacking.EXCLUSIVE:
            if exclusive_applied:
                skipped.append(Skipped(rule.id, SkipReason.EXCLUSIVE_APPLIED))
                continue
            exclusive_applied = True
        settle(rule.id, proposal)
    return Evaluation(grants, skipped)
