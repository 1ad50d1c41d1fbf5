"""Dry runs of a rule set, pure: one described order (preview) and a replay of real paid orders with a
simulated budget, simulated per-user caps and a simulated red-packet pool.

No database, no clock, no I/O: callers load the facts and pass the time. Booking mirrors
:mod:`app.rebates.service` step for step, so a dry run says what the payment callback would do:

1. a spent red packet pays its discount (the face value used) and its two legs out of its own
   reservation — legs first, under the issuing set's caps, as if nothing were granted before — and the
   rest of the reservation goes back to the budget;
2. the order without the packet is evaluated against the budget (plus what the packet gave back), the
   buyer's per-user caps counting the buyer leg just booked.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from typing import Final

from app.core.money import Money
from app.rebates.rules import (
    MERCHANT,
    Beneficiary,
    Evaluation,
    IssueRedPacket,
    OrderFacts,
    RedPacketFacts,
    RuleSet,
    Skipped,
    UserFacts,
    evaluate,
)

# Day, week and month boundaries of the per-user caps are China's, as in app.rebates.service.
CHINA: Final = timezone(timedelta(hours=8))

REBATE: Final = "rebate"
DISCOUNT: Final = "red_packet_discount"  # the face value a buyer spent, paid to the merchant
RED_PACKET: Final = "red_packet"
FROM_BUDGET: Final = "budget"
FROM_PACKET: Final = "red_packet_reservation"


@dataclass(frozen=True, slots=True, kw_only=True)
class Line:
    """One thing an order would grant: a rebate, a spent packet's discount, or a red packet issued.

    ``amount`` is what is booked (for an issued packet: its face value); ``cost`` is what it takes from
    the budget or the packet's reservation (for an issued packet: its worst case, reserved).
    """

    kind: str
    rule_id: str
    beneficiary: str
    amount: Money
    basis: str
    paid_from: str
    packet: IssueRedPacket | None = None

    @property
    def cost(self) -> Money:
        return self.packet.worst_case_cost if self.packet is not None else self.amount


@dataclass(frozen=True, slots=True)
class SpentPacket:
    """A red packet spent on the order: its frozen facts, its rule set's caps and what it still reserves."""

    facts: RedPacketFacts
    rules: RuleSet
    reserved: Money


@dataclass(frozen=True, slots=True)
class OrderOutcome:
    """What one order would grant, what granted nothing, and what a spent packet's reservation gave back."""

    lines: list[Line]
    skipped: list[Skipped]
    released: Money

    @property
    def booked(self) -> Money:
        """Money booked now: discount, legs and rebates (issued packets only reserve)."""
        return sum((line.amount for line in self.lines if line.packet is None), Money.zero())

    @property
    def reserved(self) -> Money:
        """The worst case of the packets this order issues."""
        return sum((line.cost for line in self.lines if line.packet is not None), Money.zero())

    @property
    def from_budget(self) -> Money:
        return sum((line.cost for line in self.lines if line.paid_from == FROM_BUDGET), Money.zero())

    @property
    def issued(self) -> list[IssueRedPacket]:
        return [line.packet for line in self.lines if line.packet is not None]


def _percent(rate_bp: int) -> str:
    whole, hundredths = divmod(rate_bp, 100)
    return f"{whole}.{hundredths:02d}".rstrip("0").rstrip(".") + "%"


def _issued_basis(packet: IssueRedPacket) -> str:
    return (
        f"red packet of {packet.face_value}, spend ≥ {packet.min_spend} before "
        f"{packet.valid_until.date().isoformat()}; issuer {_percent(packet.issuer_rate_bp)}, "
        f"buyer {_percent(packet.buyer_rate_bp)} of orders up to {packet.max_order_fen}"
    )


def _lines(evaluation: Evaluation, paid_from: str) -> list[Line]:
    lines = []
    for grant in evaluation.grants:
        if isinstance(grant, IssueRedPacket):
            lines.append(
                Line(
                    kind=RED_PACKET,
                    rule_id=grant.rule_id,
                    beneficiary=Beneficiary.BUYER.value,
                    amount=grant.face_value,
                    basis=_issued_basis(grant),
                    paid_from=paid_from,
                    packet=grant,
                )
            )
        else:
            lines.append(
                Line(
                    kind=REBATE,
                    rule_id=grant.rule_id,
                    beneficiary=grant.beneficiary.value,
                    amount=grant.amount,
                    basis=grant.basis,
                    paid_from=paid_from,
                )
            )
    return lines


def _plus(user: UserFacts, amount: Money) -> UserFacts:
    if not amount:
        return user
    return UserFacts(
        granted_today=user.granted_today + amount,
        granted_this_week=user.granted_this_week + amount,
        granted_this_month=user.granted_this_month + amount,
    )


def book(
    order: OrderFacts, rules: RuleSet, *, user: UserFacts, budget: Money, spent: SpentPacket | None = None
) -> OrderOutcome:
    """What ``order`` would be granted under ``rules`` with ``budget`` left (see the module docstring).

    ``spent`` describes ``order.red_packet`` (both or neither): the rule set it came from and what its
    reservation holds. New packets are dated from ``order.paid_at``, as the payment callback does.
    """
    if (spent is None) != (order.red_packet is None):
        raise ValueError("pass the spent packet's context exactly when the order spends a packet")
    lines: list[Line] = []
    skipped: list[Skipped] = []
    released = Money.zero()
    buyer_legs = Money.zero()
    if spent is not None:
        packet = spent.facts
        left = max(spent.reserved - order.discount_fen, Money.zero())
        if order.discount_fen:
            lines.append(
                Line(
                    kind=DISCOUNT,
                    rule_id=packet.rule_id,
                    beneficiary=MERCHANT,
                    amount=order.discount_fen,
                    basis=f"red packet {packet.id} spent on this order",
                    paid_from=FROM_PACKET,
                )
            )
        # Only the legs: an empty rule set with the issuing set's caps is what the booking's filter leaves.
        legs = evaluate(
            order, UserFacts(), RuleSet((), spent.rules.caps), now=order.paid_at, budget_remaining=left
        )
        lines.extend(_lines(legs, FROM_PACKET))
        skipped.extend(legs.skipped)
        for grant in legs.rebates:
            left -= grant.amount
            if grant.beneficiary is Beneficiary.BUYER:
                buyer_legs += grant.amount
        released = left
    plain = replace(order, red_packet=None)
    evaluation = evaluate(
        plain, _plus(user, buyer_legs), rules, now=order.paid_at, budget_remaining=budget + released
    )
    lines.extend(_lines(evaluation, FROM_BUDGET))
    skipped.extend(evaluation.skipped)
    return OrderOutcome(lines, skipped, released)


# ---------------------------------------------------------------- replay


@dataclass(frozen=True, slots=True, kw_only=True)
class PastOrder:
    """A real paid order as the replay sees it (what actually happened, not what the rules made of it)."""

    order_id: int
    consumer_id: int
    total: Money
    paid: Money  # what the consumer really paid (after any red packet)
    refunded: Money
    paid_at: datetime
    used_red_packet: bool
    is_first_paid_order: bool
    # Who the order is attributed to (invite and distribution rules), as of its payment.
    inviter_id: int | None = None
    promoter_l1: int | None = None
    promoter_l2: int | None = None


@dataclass(slots=True)
class Tally:
    """Counts and sums over some orders of a replay (or of what really happened to them)."""

    orders: int = 0
    grants: int = 0
    booked: Money = field(default_factory=Money.zero)
    reversed: Money = field(default_factory=Money.zero)
    packets_issued: int = 0
    packets_redeemed: int = 0
    worst_case_issued: Money = field(default_factory=Money.zero)
    gmv_driven: Money = field(default_factory=Money.zero)  # totals of orders spending a packet, less refunds

    @property
    def cost(self) -> Money:
        """What the grants cost after refunds clawed back their share."""
        return self.booked - self.reversed


@dataclass(slots=True)
class _Packet:
    number: int
    consumer_id: int
    grant: IssueRedPacket
    valid_from: datetime
    reserved: Money
    state: str = "issued"


@dataclass(frozen=True, slots=True)
class ReplayResult:
    total: Tally
    per_day: dict[date, Tally]
    skipped: dict[str, int]
    packets_expired: int
    packets_live: int
    liability_outstanding: Money  # worst case still reserved for the simulated packets live at the end
    budget_start: Money
    budget_end: Money


class Replay:
    """Runs ``rules`` over real orders in paid order, with a budget, caps and packets of its own.

    Approximations (the replay cannot know what consumers would have done under other rules):
    a simulated packet is spent only by a later order of its owner that really spent a red packet
    (the earliest-expiring one that is valid and whose minimum spend the order total reaches; the
    discount is recomputed from it); orders keep their real totals; an order that really spent a packet
    but has no simulated one is replayed as paid in full; refunds reverse each grant pro rata to the
    refunded share of what was really paid, and the clawed-back money is not returned to the simulated
    budget; simulated packets expire at their ``valid_until``, giving their reservation back.
    """

    def __init__(self, rules: RuleSet, *, budget: Money) -> None:
        self.rules = rules
        self.budget = budget
        self.budget_start = budget
        self.total = Tally()
        self.per_day: dict[date, Tally] = defaultdict(Tally)
        self.skipped: Counter[str] = Counter()
        self._packets: dict[int, list[_Packet]] = defaultdict(list)
        self._expiry: list[tuple[datetime, int, _Packet]] = []
        self._buyer_grants: dict[int, list[tuple[datetime, Money]]] = defaultdict(list)
        self._numbers = 0
        self.expired = 0

    # -- red packets

    def _expire(self, now: datetime) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            _, _, packet = heapq.heappop(self._expiry)
            if packet.state == "issued":
                packet.state = "expired"
                self.budget += packet.reserved
                packet.reserved = Money.zero()
                self.expired += 1

    def _pick(self, order: PastOrder) -> _Packet | None:
        usable = [
            packet
            for packet in self._packets[order.consumer_id]
            if packet.state == "issued"
            and packet.valid_from <= order.paid_at < packet.grant.valid_until
            and packet.grant.min_spend <= order.total
        ]
        return min(usable, key=lambda p: (p.grant.valid_until, p.number), default=None)

    # -- per-user caps, by China day / ISO week / month of the paid time

    def _user(self, consumer_id: int, moment: datetime) -> UserFacts:
        local = moment.astimezone(CHINA)
        day = local.replace(hour=0, minute=0, second=0, microsecond=0)
        week = day - timedelta(days=day.weekday())
        month = day.replace(day=1)
        kept = [(at, amount) for at, amount in self._buyer_grants[consumer_id] if at >= min(week, month)]
        self._buyer_grants[consumer_id] = kept

        def since(start: datetime) -> Money:
            return sum((amount for at, amount in kept if at >= start), Money.zero())

        return UserFacts(
            granted_today=since(day), granted_this_week=since(week), granted_this_month=since(month)
        )

    # -- one order

    def run(self, order: PastOrder) -> OrderOutcome:
        """Replay one order (call in paid order); the tallies, budget, caps and pool move on."""
        self._expire(order.paid_at)
        chosen = self._pick(order) if order.used_red_packet else None
        discount = (
            min(chosen.grant.face_value, order.total - Money(1)) if chosen is not None else Money.zero()
        )
        discount = max(discount, Money.zero())  # at least one fen is paid through WeChat
        spent = None
        if chosen is not None:
            facts = RedPacketFacts.from_issue(chosen.grant, id=chosen.number)
            spent = SpentPacket(facts, self.rules, chosen.reserved)
        facts_in = OrderFacts(
            order_id=order.order_id,
            consumer_id=order.consumer_id,
            total_fen=order.total,
            paid_fen=order.total - discount,
            discount_fen=discount,
            red_packet=spent.facts if spent is not None else None,
            is_first_paid_order=order.is_first_paid_order,
            inviter_id=order.inviter_id,
            promoter_l1=order.promoter_l1,
            promoter_l2=order.promoter_l2,
            paid_at=order.paid_at,
        )
        outcome = book(
            facts_in,
            self.rules,
            user=self._user(order.consumer_id, order.paid_at),
            budget=self.budget,
            spent=spent,
        )
        self.budget = self.budget + outcome.released - outcome.from_budget
        day = self.per_day[order.paid_at.astimezone(CHINA).date()]
        for tally in (self.total, day):
            tally.orders += 1
        if chosen is not None:
            chosen.state = "redeemed"
            chosen.reserved = Money.zero()
            for tally in (self.total, day):
                tally.packets_redeemed += 1
                tally.gmv_driven += order.total - order.refunded
        local = order.paid_at.astimezone(CHINA)
        for line in outcome.lines:
            if line.packet is not None:
                self._numbers += 1
                packet = _Packet(self._numbers, order.consumer_id, line.packet, order.paid_at, line.cost)
                self._packets[order.consumer_id].append(packet)
                heapq.heappush(self._expiry, (line.packet.valid_until, packet.number, packet))
                for tally in (self.total, day):
                    tally.packets_issued += 1
                    tally.worst_case_issued += line.cost
                continue
            reversed_ = _clawed_back(line.amount, order)
            for tally in (self.total, day):
                tally.grants += 1
                tally.booked += line.amount
                tally.reversed += reversed_
            if line.beneficiary == Beneficiary.BUYER.value:
                self._buyer_grants[order.consumer_id].append((local, line.amount))
        self.skipped.update(skip.reason.value for skip in outcome.skipped)
        return outcome

    def finish(self, now: datetime) -> ReplayResult:
        """The result, counting as outstanding the simulated packets still unspent and valid at ``now``."""
        self._expire(now)
        live = [p for packets in self._packets.values() for p in packets if p.state == "issued"]
        return ReplayResult(
            total=self.total,
            per_day=dict(sorted(self.per_day.items())),
            skipped=dict(self.skipped),
            packets_expired=self.expired,
            packets_live=len(live),
            liability_outstanding=sum((p.reserved for p in live), Money.zero()),
            budget_start=self.budget_start,
            budget_end=self.budget,
        )


def _clawed_back(amount: Money, order: PastOrder) -> Money:
    """The share of a grant a refund reverses: pro rata to the refunded share of what was paid (floor)."""
    if not order.refunded:
        return Money.zero()
    if not order.paid:
        return amount
    return amount.prorate(min(order.refunded.fen, order.paid.fen), order.paid.fen)


def ratio(numerator: int, denominator: int, places: int = 4) -> str | None:
    """``numerator / denominator`` as a decimal string rounded down to ``places`` (None for ÷ 0); no floats."""
    if denominator == 0:
        return None
    scale = 10**places
    scaled = numerator * scale // denominator  # exact integers: floor, the product's one rounding rule
    sign = "-" if scaled < 0 else ""
    whole, fraction = divmod(abs(scaled), scale)
    return f"{sign}{whole}.{fraction:0{places}d}"


def roi(gmv: Money, cost: Money) -> str | None:
    """ROI = (GMV driven − cost) / cost, as a decimal string; None when nothing was spent."""
    return ratio((gmv - cost).fen, cost.fen)
