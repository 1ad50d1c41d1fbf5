"""Properties of evaluation over generated rule sets and orders: the promises the money relies on."""

from __future__ import annotations

import math
import random
from datetime import timedelta
from fractions import Fraction
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.money import Money
from app.rebates.rules import (
    Beneficiary,
    Evaluation,
    OrderFacts,
    RedPacketFacts,
    UserFacts,
    evaluate,
    load_rules,
)
from tests.rebates.builders import NOW

BUYER = 1
PROPERTY = settings(max_examples=200, deadline=None)
GRANTING_KINDS = ["two_way", "ratio", "ladder", "fixed", "cashback", "invite", "distribution"]

fen = st.integers(min_value=0, max_value=300_000)
rates = st.integers(min_value=0, max_value=10_000)
optional_fen = st.none() | fen


def _drop_none(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if value is not None}


@st.composite
def two_way_docs(draw: st.DrawFn, rule_id: str = "tw") -> dict[str, Any]:
    min_spend = draw(st.integers(0, 100_000))
    return _drop_none(
        {
            "id": rule_id,
            "kind": "two_way",
            "priority": draw(st.integers(-3, 3)),
            "stacking": draw(st.sampled_from(["exclusive", "combinable"])),
            "trigger_min_order_fen": draw(st.integers(1, 300_000)),
            "packet_value_fen": draw(st.integers(1, 5_000)),
            "packet_min_spend_fen": min_spend,
            "packet_valid_days": draw(st.integers(1, 60)),
            "issuer_rate_bp": draw(rates),
            "buyer_rate_bp": draw(rates),
            "max_order_fen": max(1, min_spend + draw(st.integers(0, 500_000))),
            "issuer_cap_fen": draw(optional_fen),
            "buyer_cap_fen": draw(optional_fen),
        }
    )


@st.composite
def ladder_tiers(draw: st.DrawFn) -> list[dict[str, int]]:
    size = draw(st.integers(1, 4))
    minimums = sorted(draw(st.sets(st.integers(0, 500_000), min_size=size, max_size=size)))
    tier_rates = sorted(draw(st.sets(rates, min_size=size, max_size=size)))
    return [{"min_order_fen": low, "rate_bp": rate} for low, rate in zip(minimums, tier_rates, strict=True)]


@st.composite
def rule_docs(draw: st.DrawFn, rule_id: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(GRANTING_KINDS))
    if kind == "two_way":
        document: dict[str, Any] = draw(two_way_docs(rule_id))
        return document
    base = {
        "id": rule_id,
        "kind": kind,
        "priority": draw(st.integers(-3, 3)),
        "stacking": draw(st.sampled_from(["exclusive", "combinable"])),
    }
    match kind:
        case "ratio":
            return base | {"rate_bp": draw(rates), "min_order_fen": draw(fen)}
        case "ladder":
            return base | {"tiers": draw(ladder_tiers())}
        case "fixed":
            return base | {"amount_fen": draw(st.integers(1, 50_000)), "min_order_fen": draw(fen)}
        case "cashback":
            return base | {"rate_bp": draw(rates), "requires_red_packet": draw(st.booleans())}
        case "invite":
            return base | {"inviter_fen": draw(fen), "invitee_fen": draw(fen)}
        case _:
            return base | {"level1_bp": draw(rates), "level2_bp": draw(rates)}


@st.composite
def multiplier_docs(draw: st.DrawFn, rule_id: str, targets: list[str]) -> dict[str, Any]:
    starts = NOW + timedelta(hours=draw(st.integers(-10, 10)))
    return {
        "id": rule_id,
        "kind": "multiplier",
        "priority": draw(st.integers(-3, 3)),
        "stacking": draw(st.sampled_from(["exclusive", "combinable"])),
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=draw(st.integers(1, 20)))).isoformat(),
        "factor_bp": draw(st.integers(10_000, 100_000)),
        "applies_to": draw(st.lists(st.sampled_from(targets), min_size=1, max_size=3, unique=True)),
    }


@st.composite
def rule_documents(draw: st.DrawFn) -> dict[str, Any]:
    ids = [f"rule-{index}" for index in range(draw(st.integers(0, 6)))]
    rules = [draw(rule_docs(rule_id)) for rule_id in ids]
    if ids:
        rules += [draw(multiplier_docs(f"boost-{index}", ids)) for index in range(draw(st.integers(0, 2)))]
    caps = _drop_none(
        {
            "per_order_fen": draw(optional_fen),
            "per_user_day_fen": draw(optional_fen),
            "per_user_week_fen": draw(optional_fen),
            "per_user_month_fen": draw(optional_fen),
        }
    )
    return {"rules": rules, "caps": caps}


@st.composite
def red_packets(draw: st.DrawFn) -> RedPacketFacts:
    min_spend = draw(st.integers(0, 100_000))
    return RedPacketFacts(
        id=draw(st.integers(1, 10**6)),
        face_value=Money(draw(st.integers(1, 5_000))),
        issuer=draw(st.sampled_from(["merchant", 2, BUYER])),
        issuer_rate_bp=draw(rates),
        buyer_rate_bp=draw(rates),
        min_spend=Money(min_spend),
        max_order_fen=Money(min_spend + draw(st.integers(1, 500_000))),
        issuer_cap_fen=draw(st.none() | fen.map(Money)),
        buyer_cap_fen=draw(st.none() | fen.map(Money)),
        rule_id=draw(st.sampled_from(["tw", "gone"])),
    )


@st.composite
def orders(draw: st.DrawFn, packet: bool | None = None) -> OrderFacts:
    total = draw(st.integers(0, 1_500_000))
    red_packet = draw(red_packets()) if packet or (packet is None and draw(st.booleans())) else None
    if red_packet is not None:
        discount = min(total, red_packet.face_value.fen)
    else:
        discount = draw(st.integers(0, total))
    promoter_l1 = draw(st.sampled_from([None, 3, BUYER]))
    promoter_l2 = draw(st.sampled_from([None, 4])) if promoter_l1 is not None else None
    return OrderFacts(
        order_id=draw(st.integers(1, 10**6)),
        consumer_id=BUYER,
        total_fen=Money(total),
        paid_fen=Money(total - discount),
        discount_fen=Money(discount),
        red_packet=red_packet,
        is_first_paid_order=draw(st.booleans()),
        inviter_id=draw(st.sampled_from([None, 2, BUYER])),
        promoter_l1=promoter_l1,
        promoter_l2=promoter_l2,
        paid_at=NOW + timedelta(hours=draw(st.integers(-15, 15))),
    )


users = st.builds(
    UserFacts,
    granted_today=fen.map(Money),
    granted_this_week=fen.map(Money),
    granted_this_month=fen.map(Money),
)
budgets = st.integers(0, 400_000).map(Money) | st.just(Money(10**12))


def _to_buyer(evaluation: Evaluation) -> int:
    return sum(rebate.amount.fen for rebate in evaluation.rebates if rebate.beneficiary_id == BUYER)


@PROPERTY
@given(rule_documents(), orders(), users, budgets)
def test_grants_are_positive_and_within_caps_and_budget(
    document: dict[str, Any], order: OrderFacts, user: UserFacts, budget: Money
) -> None:
    rules = load_rules(document)

    result = evaluate(order, user, rules, now=NOW, budget_remaining=budget)

    assert all(grant.cost.fen > 0 for grant in result.grants)
    assert result.cost <= budget
    caps = rules.caps
    if caps.per_order_fen is not None:
        assert sum(rebate.amount.fen for rebate in result.rebates) <= caps.per_order_fen.fen
    for cap, granted in (
        (caps.per_user_day_fen, user.granted_today),
        (caps.per_user_week_fen, user.granted_this_week),
        (caps.per_user_month_fen, user.granted_this_month),
    ):
        if cap is not None:
            assert _to_buyer(result) <= max(0, cap.fen - granted.fen)


@PROPERTY
@given(rule_documents(), orders(), users, budgets, st.randoms(use_true_random=False))
def test_evaluation_is_deterministic_and_independent_of_document_order(
    document: dict[str, Any], order: OrderFacts, user: UserFacts, budget: Money, shuffler: random.Random
) -> None:
    shuffled = document | {"rules": shuffler.sample(document["rules"], len(document["rules"]))}

    first = evaluate(order, user, load_rules(document), now=NOW, budget_remaining=budget)
    again = evaluate(order, user, load_rules(document), now=NOW, budget_remaining=budget)
    reordered = evaluate(order, user, load_rules(shuffled), now=NOW, budget_remaining=budget)

    assert first == again == reordered
    # Rule grants follow the rule set's priority order (a spent packet's legs come first).
    rules = load_rules(document)
    position = {rule.id: index for index, rule in enumerate(rules.rules)}
    leg_ids = {order.red_packet.rule_id} if order.red_packet is not None else set()
    legs = 0
    while legs < len(first.grants) and first.grants[legs].rule_id in leg_ids and legs < 2:
        legs += 1
    indices = [position[grant.rule_id] for grant in first.grants[legs:]]
    assert indices == sorted(indices)


@PROPERTY
@given(rule_documents(), orders(), users, budgets)
def test_commissions_reach_at_most_the_two_promoters_of_the_order(
    document: dict[str, Any], order: OrderFacts, user: UserFacts, budget: Money
) -> None:
    result = evaluate(order, user, load_rules(document), now=NOW, budget_remaining=budget)

    assert {member.value for member in Beneficiary} == {
        "buyer",
        "issuer_merchant",
        "issuer_consumer",
        "inviter",
        "invitee",
        "promoter_l1",
        "promoter_l2",
    }
    promoters = {Beneficiary.PROMOTER_L1: order.promoter_l1, Beneficiary.PROMOTER_L2: order.promoter_l2}
    seen: set[tuple[str, Beneficiary]] = set()
    for rebate in result.rebates:
        if rebate.beneficiary in promoters:
            assert rebate.beneficiary_id is not None
            assert rebate.beneficiary_id == promoters[rebate.beneficiary]
            assert (rebate.rule_id, rebate.beneficiary) not in seen
            seen.add((rebate.rule_id, rebate.beneficiary))


@st.composite
def single_share_cases(draw: st.DrawFn) -> tuple[dict[str, Any], OrderFacts, list[Fraction]]:
    """One rate-based rule (no caps, active combinable multipliers) with the exact values it should floor."""
    order = draw(orders(packet=False))
    kind = draw(st.sampled_from(["ratio", "ladder", "cashback", "distribution"]))
    base = {"id": "r", "kind": kind, "priority": 0, "stacking": "combinable"}
    paid = order.paid_fen.fen
    if kind in ("ratio", "cashback"):
        rate = draw(rates)
        rule = base | {"rate_bp": rate}
        shares = [(paid, rate)]
    elif kind == "ladder":
        tiers = draw(ladder_tiers())
        tiers[0]["min_order_fen"] = 0
        rule = base | {"tiers": tiers}
        rate = [tier["rate_bp"] for tier in tiers if tier["min_order_fen"] <= order.total_fen.fen][-1]
        shares = [(paid, rate)]
    else:
        level1, level2 = draw(rates), draw(rates)
        rule = base | {"level1_bp": level1, "level2_bp": level2}
        order = OrderFacts(**{**_facts(order), "promoter_l1": 3, "promoter_l2": 4})
        shares = [(paid, level1), (paid, level2)]
    factors = draw(st.lists(st.integers(10_000, 100_000), max_size=2))
    boosts = [
        {
            "id": f"boost-{index}",
            "kind": "multiplier",
            "priority": 0,
            "stacking": "combinable",
            "starts_at": (order.paid_at - timedelta(hours=1)).isoformat(),
            "ends_at": (order.paid_at + timedelta(hours=1)).isoformat(),
            "factor_bp": factor,
            "applies_to": ["r"],
        }
        for index, factor in enumerate(factors)
    ]
    scale = math.prod(factors)
    exact = [Fraction(amount * rate * scale, 10_000 ** (1 + len(factors))) for amount, rate in shares]
    return {"rules": [rule, *boosts]}, order, exact


def _facts(order: OrderFacts) -> dict[str, Any]:
    return {name: getattr(order, name) for name in OrderFacts.__dataclass_fields__}


@PROPERTY
@given(single_share_cases())
def test_rate_based_amounts_are_floored_once_before_caps(
    case: tuple[dict[str, Any], OrderFacts, list[Fraction]],
) -> None:
    document, order, exact = case

    result = evaluate(order, UserFacts(), load_rules(document), now=NOW, budget_remaining=Money(10**15))

    # Zero amounts are skipped, not granted: compare only what floors to at least one fen.
    expected = [value for value in exact if value >= 1]
    assert len(result.rebates) == len(expected)
    for rebate, value in zip(result.rebates, expected, strict=True):
        assert value - 1 < rebate.amount.fen <= value


@PROPERTY
@given(orders(packet=True))
def test_redemption_legs_are_floored_once_at_the_frozen_rates(order: OrderFacts) -> None:
    packet = order.red_packet
    assert packet is not None
    uncapped = RedPacketFacts(**{**_packet_facts(packet), "issuer_cap_fen": None, "buyer_cap_fen": None})
    order = OrderFacts(**{**_facts(order), "red_packet": uncapped})

    result = evaluate(order, UserFacts(), load_rules({"rules": []}), now=NOW, budget_remaining=Money(10**15))

    if order.total_fen < packet.min_spend:
        assert result.grants == []
        return
    base = min(order.total_fen, packet.max_order_fen).fen
    exact = [Fraction(base * rate, 10_000) for rate in (packet.issuer_rate_bp, packet.buyer_rate_bp)]
    assert [rebate.amount.fen for rebate in result.rebates] == [
        math.floor(value) for value in exact if value >= 1
    ]


def _packet_facts(packet: RedPacketFacts) -> dict[str, Any]:
    return {name: getattr(packet, name) for name in RedPacketFacts.__dataclass_fields__}


@PROPERTY
@given(
    two_way_docs(),
    st.lists(st.integers(10_000, 100_000), max_size=2),
    st.sampled_from(["merchant", 2, BUYER]),
    st.integers(0, 3_000_000),
    st.none() | st.just({"per_order_fen": 700}),
)
def test_worst_case_cost_covers_redeeming_the_packet_on_any_order(
    rule: dict[str, Any], factors: list[int], issuer: str | int, total: int, caps: dict[str, Any] | None
) -> None:
    boosts = [
        {
            "id": f"boost-{index}",
            "kind": "multiplier",
            "priority": 0,
            "stacking": "combinable",
            "starts_at": (NOW - timedelta(days=1)).isoformat(),
            "ends_at": (NOW + timedelta(days=1)).isoformat(),
            "factor_bp": factor,
            "applies_to": ["tw"],
        }
        for index, factor in enumerate(factors)
    ]
    trigger = rule["trigger_min_order_fen"]
    buying = OrderFacts(
        order_id=1, consumer_id=BUYER, total_fen=Money(trigger), paid_fen=Money(trigger), paid_at=NOW
    )
    (issued,) = evaluate(
        buying, UserFacts(), load_rules({"rules": [rule, *boosts]}), now=NOW, budget_remaining=Money(10**15)
    ).issued
    packet = RedPacketFacts.from_issue(issued, id=5, issuer=issuer)  # type: ignore[arg-type]
    discount = min(total, packet.face_value.fen)
    spending = OrderFacts(
        order_id=2,
        consumer_id=BUYER,
        total_fen=Money(total),
        paid_fen=Money(total - discount),
        discount_fen=Money(discount),
        red_packet=packet,
        paid_at=NOW + timedelta(days=3),  # after the boost: the frozen rates still hold
    )
    later_rules = load_rules({"rules": [], "caps": caps} if caps else {"rules": []})

    result = evaluate(spending, UserFacts(), later_rules, now=NOW, budget_remaining=Money(10**15))

    assert issued.face_value + result.cost <= issued.worst_case_cost
