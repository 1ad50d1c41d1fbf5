"""Preview and replay: what a campaign's rules (or a draft of them) would grant, without granting it.

Both are read-only: they load rows and ledger balances and never add, change or flush one (not even a
ledger account, which :func:`app.ledger.accounts.campaign_accounts` would create on first use).
The arithmetic is :mod:`app.campaigns.simulation`, which mirrors the payment callback's booking.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final

from sqlalchemy import select

from app.campaigns.models import Campaign
from app.campaigns.service import budget_balances, current_version, get_campaign, validated_rules
from app.campaigns.simulation import (
    CHINA,
    OrderOutcome,
    PastOrder,
    Replay,
    ReplayResult,
    SpentPacket,
    Tally,
    book,
)
from app.core.db import utcnow
from app.core.errors import InvalidInput
from app.core.money import Money
from app.extensions import db
from app.invitations.service import attribution_batch
from app.orders.models import Order, OrderStatus
from app.rebates.models import RebateGrant
from app.rebates.rules import (
    MERCHANT,
    OrderFacts,
    RedPacketFacts,
    RuleSet,
    TwoWayRule,
    UserFacts,
    worst_case_cost,
)
from app.red_packets.models import RedPacket, RedPacketStatus

REPLAY_ORDER_LIMIT: Final = 20_000
MAX_REPLAY_DAYS: Final = 90
# Stand-ins for the people of a described order (a preview has no real consumers).
_BUYER, _INVITER, _PROMOTER_L1, _PROMOTER_L2 = 1, 2, 3, 4


def _rules_of(campaign: Campaign, draft: dict[str, Any] | None) -> tuple[RuleSet, int | None]:
    """The draft (validated; 422 naming the bad fields) or the current version, and that version's number."""
    if draft is not None:
        return validated_rules(draft), None
    version = current_version(campaign)
    return validated_rules(version.document), version.version


# ---------------------------------------------------------------- preview (one described order)


@dataclass(frozen=True)
class Preview:
    rules_version: int | None
    budget: Money
    outcome: OrderOutcome
    order: OrderFacts


def _packet_facts(described: dict[str, Any], rules: RuleSet, total: Money) -> RedPacketFacts:
    """The spent packet: the fields given, the rest from the named (or first) two-way rule of ``rules``."""
    rule_id = described.get("rule_id")
    named = rules.get(rule_id) if rule_id else None
    two_way = named if isinstance(named, TwoWayRule) else None
    if rule_id is None:
        two_way = next((rule for rule in rules.rules if isinstance(rule, TwoWayRule)), None)
    defaults: dict[str, Any] = {}
    if two_way is not None:
        defaults = {
            "face_value_fen": two_way.packet_value_fen,
            "min_spend_fen": two_way.packet_min_spend_fen,
            "issuer_rate_bp": two_way.issuer_rate_bp,
            "buyer_rate_bp": two_way.buyer_rate_bp,
            "max_order_fen": two_way.max_order_fen,
            "issuer_cap_fen": two_way.issuer_cap_fen,
            "buyer_cap_fen": two_way.buyer_cap_fen,
        }
    values = defaults | described
    required = ("face_value_fen", "min_spend_fen", "issuer_rate_bp", "buyer_rate_bp", "max_order_fen")
    missing = [name for name in required if name not in values]
    if missing:
        raise InvalidInput(
            "describe the red packet, or name a two-way rule of these rules to take it from",
            details={
                "fields": {
                    f"order.red_packet.{name}": ["Missing data for required field."] for name in missing
                }
            },
        )
    if total < values["min_spend_fen"]:
        raise InvalidInput(
            f"this red packet needs an order of at least {values['min_spend_fen'].fen} fen",
            details={"fields": {"order.total_fen": ["below the red packet's minimum spend"]}},
        )
    return RedPacketFacts(
        id=0,
        face_value=values["face_value_fen"],
        issuer=MERCHANT,
        issuer_rate_bp=values["issuer_rate_bp"],
        buyer_rate_bp=values["buyer_rate_bp"],
        min_spend=values["min_spend_fen"],
        max_order_fen=values["max_order_fen"],
        issuer_cap_fen=values.get("issuer_cap_fen"),
        buyer_cap_fen=values.get("buyer_cap_fen"),
        rule_id=rule_id or (two_way.id if two_way is not None else "red-packet"),
    )


def _order_facts(described: dict[str, Any], rules: RuleSet, now: datetime) -> OrderFacts:
    total: Money = described["total_fen"]
    packet = _packet_facts(described["red_packet"], rules, total) if "red_packet" in described else None
    # As at payment: the packet lowers the payable amount by its face value, leaving at least one fen.
    discount = min(packet.face_value, total - Money(1)) if packet is not None else Money.zero()
    paid: Money = described.get("paid_fen", total - discount)
    if paid > total:
        raise InvalidInput(
            "paid_fen cannot exceed total_fen", details={"fields": {"order.paid_fen": ["exceeds total_fen"]}}
        )
    if packet is not None and total - paid > packet.face_value:
        raise InvalidInput(
            "a red packet lowers the payable amount by at most its face value",
            details={"fields": {"order.paid_fen": ["below total_fen less the red packet's face value"]}},
        )
    levels = described.get("promoter_levels", 0)
    return OrderFacts(
        order_id=0,
        consumer_id=_BUYER,
        total_fen=total,
        paid_fen=paid,
        discount_fen=total - paid,
        red_packet=packet,
        is_first_paid_order=described.get("is_first_paid_order", False),
        inviter_id=_INVITER if described.get("has_inviter") else None,
        promoter_l1=_PROMOTER_L1 if levels >= 1 else None,
        promoter_l2=_PROMOTER_L2 if levels >= 2 else None,
        paid_at=described.get("paid_at") or now,
    )


def preview_order(
    *,
    merchant_id: int,
    campaign_id: int,
    order: dict[str, Any],
    rules: dict[str, Any] | None = None,
    budget_fen: Money | None = None,
    now: datetime | None = None,
) -> Preview:
    """What the draft (or current) rules would grant for one described order; writes nothing.

    New grants meet ``budget_fen`` or else the campaign's remaining budget; a spent packet pays its
    discount and legs from its own reservation (its worst case), as at payment.
    """
    campaign = get_campaign(merchant_id=merchant_id, campaign_id=campaign_id)
    ruleset, version = _rules_of(campaign, rules)
    facts = _order_facts(order, ruleset, now or utcnow())
    budget = budget_fen if budget_fen is not None else budget_balances(campaign)[0]
    spent = None
    if facts.red_packet is not None:
        packet = facts.red_packet
        reserved = worst_case_cost(
            packet.face_value,
            packet.max_order_fen,
            packet.issuer_rate_bp,
            packet.buyer_rate_bp,
            packet.issuer_cap_fen,
            packet.buyer_cap_fen,
        )
        spent = SpentPacket(packet, ruleset, reserved)
    outcome = book(facts, ruleset, user=UserFacts(), budget=budget, spent=spent)
    return Preview(rules_version=version, budget=budget, outcome=outcome, order=facts)


# ---------------------------------------------------------------- replay (real orders of the last N days)


@dataclass(frozen=True)
class Replayed:
    days: int
    since: datetime
    until: datetime
    rules_version: int | None
    limit: int
    truncated: bool
    simulated: ReplayResult
    live: Tally
    live_per_day: dict[date, Tally]


def _past_orders(merchant_id: int, since: datetime, until: datetime) -> tuple[list[PastOrder], bool]:
    """The merchant's orders paid in [since, until), oldest first, at most the limit (and whether cut)."""
    window = (
        Order.merchant_id == merchant_id,
        Order.status == OrderStatus.PAID,
        Order.paid_at >= since,
        Order.paid_at < until,
    )
    rows = db.session.execute(
        select(
            Order.id,
            Order.consumer_id,
            Order.total,
            Order.paid_amount,
            Order.discount,
            Order.refunded,
            Order.paid_at,
            Order.promoter_code,
        )
        .where(*window)
        .order_by(Order.paid_at, Order.id)
        .limit(REPLAY_ORDER_LIMIT + 1)
    ).all()
    truncated = len(rows) > REPLAY_ORDER_LIMIT
    rows = rows[:REPLAY_ORDER_LIMIT]
    # Consumers who had paid before the window: none of their orders in it is a first order.
    returning = set(
        db.session.scalars(
            select(Order.consumer_id)
            .where(
                Order.merchant_id == merchant_id,
                Order.status == OrderStatus.PAID,
                Order.paid_at < since,
                Order.consumer_id.in_(select(Order.consumer_id).where(*window).scalar_subquery()),
            )
            .distinct()
        )
    )
    attributions = attribution_batch(
        merchant_id=merchant_id,
        buyers={row.consumer_id for row in rows},
        promoter_codes={row.promoter_code for row in rows if row.promoter_code},
    )
    orders = []
    for order_id, consumer_id, total, paid, discount, refunded, paid_at, promoter_code in rows:
        attribution = attributions.of(buyer=consumer_id, promoter_code=promoter_code, at=paid_at)
        orders.append(
            PastOrder(
                order_id=order_id,
                consumer_id=consumer_id,
                total=total,
                paid=paid,
                refunded=refunded,
                paid_at=paid_at,
                used_red_packet=discount.fen > 0,
                is_first_paid_order=consumer_id not in returning,
                inviter_id=attribution.inviter_id,
                promoter_l1=attribution.promoter_l1,
                promoter_l2=attribution.promoter_l2,
            )
        )
        returning.add(consumer_id)
    return orders, truncated


def _live(
    campaign: Campaign, orders: list[PastOrder], since: datetime, until: datetime
) -> tuple[Tally, dict[date, Tally]]:
    """What the live rules really did for the same orders: grant rows and packets they issued."""
    days = {order.order_id: order.paid_at.astimezone(CHINA).date() for order in orders}
    by_id = {order.order_id: order for order in orders}
    in_window = (
        select(Order.id)
        .where(
            Order.merchant_id == campaign.merchant_id,
            Order.status == OrderStatus.PAID,
            Order.paid_at >= since,
            Order.paid_at < until,
        )
        .scalar_subquery()
    )
    total = Tally(orders=len(orders))
    per_day: dict[date, Tally] = defaultdict(Tally)
    for order in orders:
        per_day[days[order.order_id]].orders += 1
    for order_id, amount, reversed_ in db.session.execute(
        select(RebateGrant.order_id, RebateGrant.amount, RebateGrant.reversed).where(
            RebateGrant.campaign_id == campaign.id, RebateGrant.order_id.in_(in_window)
        )
    ):
        if order_id not in days:
            continue  # beyond the replay's order limit
        for tally in (total, per_day[days[order_id]]):
            tally.grants += 1
            tally.booked += amount
            tally.reversed += reversed_
    packets = db.session.execute(
        select(RedPacket).where(
            RedPacket.campaign_id == campaign.id, RedPacket.source_order_id.in_(in_window)
        )
    ).scalars()
    for packet in packets:
        if packet.source_order_id not in days:
            continue
        worst = worst_case_cost(
            packet.face_value,
            packet.max_order,
            packet.issuer_rate_bp,
            packet.buyer_rate_bp,
            packet.issuer_cap,
            packet.buyer_cap,
        )
        for tally in (total, per_day[days[packet.source_order_id]]):
            tally.packets_issued += 1
            tally.worst_case_issued += worst
    for order_id in db.session.scalars(
        select(RedPacket.order_id).where(
            RedPacket.campaign_id == campaign.id,
            RedPacket.status == RedPacketStatus.REDEEMED,
            RedPacket.order_id.in_(in_window),
        )
    ):
        if order_id not in days:
            continue
        for tally in (total, per_day[days[order_id]]):
            tally.packets_redeemed += 1
            tally.gmv_driven += by_id[order_id].total - by_id[order_id].refunded
    return total, dict(sorted(per_day.items()))


def replay_orders(
    *,
    merchant_id: int,
    campaign_id: int,
    days: int,
    rules: dict[str, Any] | None = None,
    budget_fen: Money | None = None,
    now: datetime | None = None,
) -> Replayed:
    """Run the draft (or current) rules over the merchant's orders paid in the last ``days`` days.

    Read-only. The simulated budget starts at ``budget_fen`` or the campaign's remaining plus reserved
    budget; at most :data:`REPLAY_ORDER_LIMIT` orders (the oldest first) are replayed.
    """
    if not 1 <= days <= MAX_REPLAY_DAYS:
        raise InvalidInput(
            f"days must be 1 to {MAX_REPLAY_DAYS}", details={"fields": {"days": ["out of range"]}}
        )
    campaign = get_campaign(merchant_id=merchant_id, campaign_id=campaign_id)
    ruleset, version = _rules_of(campaign, rules)
    until = now or utcnow()
    since = until - timedelta(days=days)
    if budget_fen is None:
        remaining, reserved = budget_balances(campaign)
        budget_fen = remaining + reserved
    orders, truncated = _past_orders(merchant_id, since, until)
    replay = Replay(ruleset, budget=budget_fen)
    for order in orders:
        replay.run(order)
    live, live_per_day = _live(campaign, orders, since, until)
    return Replayed(
        days=days,
        since=since,
        until=until,
        rules_version=version,
        limit=REPLAY_ORDER_LIMIT,
        truncated=truncated,
        simulated=replay.finish(until),
        live=live,
        live_per_day=live_per_day,
    )
