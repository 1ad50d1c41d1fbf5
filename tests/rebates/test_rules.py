"""Rule evaluation with the seed numbers: what an order earns, and why a rule granted nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.core.money import Money
from app.rebates.rules import (
    Beneficiary,
    IssueRedPacket,
    OrderFacts,
    Rebate,
    RedPacketFacts,
    Skipped,
    SkipReason,
    UserFacts,
    evaluate,
)
from tests.rebates.builders import BUYER, NOW, PLENTY, nobody, order, packet, rule, ruleset, two_way


def amounts(evaluation_grants: list[IssueRedPacket | Rebate]) -> list[tuple[str, str, int]]:
    return [
        (grant.rule_id, grant.beneficiary, grant.amount.fen)
        for grant in evaluation_grants
        if isinstance(grant, Rebate)
    ]


# ---------------------------------------------------------------- two-way (双向返利)


def test_a_purchase_of_200_yuan_earns_a_red_packet_with_frozen_rates_and_its_worst_case() -> None:
    result = evaluate(order(20000), nobody(), ruleset(two_way()), now=NOW, budget_remaining=PLENTY)

    assert result.skipped == []
    assert result.grants == [
        IssueRedPacket(
            rule_id="two-way",
            recipient_id=BUYER,
            face_value=Money(1000),
            min_spend=Money(5000),
            valid_until=NOW + timedelta(days=30),
            issuer_rate_bp=1000,
            buyer_rate_bp=500,
            max_order_fen=Money(100000),
            issuer_cap_fen=None,
            buyer_cap_fen=None,
            # ¥10 face + 10 % and 5 % of the ¥1 000 max order.
            worst_case_cost=Money(1000 + 10000 + 5000),
        )
    ]
    assert result.cost == Money(16000)


def test_a_purchase_below_200_yuan_earns_no_red_packet() -> None:
    result = evaluate(order(19999), nobody(), ruleset(two_way()), now=NOW, budget_remaining=PLENTY)

    assert result.grants == []
    assert result.skipped == [Skipped("two-way", SkipReason.BELOW_MINIMUM)]


def test_spending_the_packet_on_50_yuan_pays_the_merchant_10_percent_and_the_buyer_5_percent() -> None:
    spent = order(5000, red_packet=packet())

    result = evaluate(spent, nobody(), ruleset(two_way()), now=NOW, budget_remaining=PLENTY)

    issuer, buyer = result.rebates
    assert issuer == Rebate(
        rule_id="two-way",
        beneficiary=Beneficiary.ISSUER_MERCHANT,
        beneficiary_id=None,
        amount=Money(500),
        basis="10% of ¥50.00, red packet 3",
    )
    assert (buyer.beneficiary, buyer.beneficiary_id, buyer.amount) == ("buyer", BUYER, Money(250))
    assert buyer.basis.startswith("5% of ¥50.00")
    # The ¥50 order does not reach the ¥200 trigger: no new packet.
    assert result.skipped == [Skipped("two-way", SkipReason.BELOW_MINIMUM)]


def test_redemption_uses_the_packets_frozen_rates_not_todays_rules() -> None:
    today = ruleset(two_way(issuer_rate_bp=3000, buyer_rate_bp=0))

    result = evaluate(order(5000, red_packet=packet()), nobody(), today, now=NOW, budget_remaining=PLENTY)

    assert amounts(result.grants) == [("two-way", "issuer_merchant", 500), ("two-way", "buyer", 250)]


def test_redemption_pays_even_when_the_rule_is_no_longer_in_the_set() -> None:
    result = evaluate(order(5000, red_packet=packet()), nobody(), ruleset(), now=NOW, budget_remaining=PLENTY)

    assert amounts(result.grants) == [("two-way", "issuer_merchant", 500), ("two-way", "buyer", 250)]


def test_a_packet_below_its_minimum_spend_pays_no_legs() -> None:
    result = evaluate(order(4999, red_packet=packet()), nobody(), ruleset(), now=NOW, budget_remaining=PLENTY)

    assert result.grants == []
    assert result.skipped == [Skipped("two-way", SkipReason.BELOW_MINIMUM)]


def test_in_a_personal_play_the_consumer_who_sent_the_packet_earns_the_issuer_leg() -> None:
    # The loser of a step challenge sent the winner a packet; the winner spends it on sports gear.
    gift = packet(issuer=42)

    result = evaluate(order(30000, red_packet=gift), nobody(), ruleset(), now=NOW, budget_remaining=PLENTY)

    issuer = result.rebates[0]
    assert (issuer.beneficiary, issuer.beneficiary_id, issuer.amount) == ("issuer_consumer", 42, Money(3000))


def test_legs_are_counted_up_to_the_max_order_and_then_capped() -> None:
    capped = packet(max_order_fen=Money(100000), issuer_cap_fen=Money(8000))

    result = evaluate(order(250000, red_packet=capped), nobody(), ruleset(), now=NOW, budget_remaining=PLENTY)

    issuer, buyer = result.rebates
    assert issuer.amount == Money(8000)  # 10 % of ¥1 000 = ¥100, cut to the ¥80 leg cap
    assert "leg cap ¥80.00" in issuer.basis
    assert buyer.amount == Money(5000)  # 5 % of ¥1 000, not of ¥2 500
    assert "counted up to ¥1000.00" in buyer.basis


def test_worst_case_cost_counts_leg_caps() -> None:
    rules = ruleset(two_way(issuer_cap_fen=2000, buyer_cap_fen=0))

    (issued,) = evaluate(order(20000), nobody(), rules, now=NOW, budget_remaining=PLENTY).issued

    assert issued.worst_case_cost == Money(1000 + 2000 + 0)
    assert (issued.issuer_cap_fen, issued.buyer_cap_fen) == (Money(2000), Money(0))


def test_a_packet_built_from_its_issue_grant_redeems_within_the_worst_case() -> None:
    (issued,) = evaluate(order(20000), nobody(), ruleset(two_way()), now=NOW, budget_remaining=PLENTY).issued
    facts = RedPacketFacts.from_issue(issued, id=9, rule_version_id=4)

    result = evaluate(order(100000, red_packet=facts), nobody(), ruleset(), now=NOW, budget_remaining=PLENTY)

    assert facts.rule_version_id == 4
    assert issued.face_value + result.cost == issued.worst_case_cost


# ---------------------------------------------------------------- ratio, ladder, fixed, cash-back


def test_cashback_is_8_percent_of_the_50_yuan_actually_paid() -> None:
    # The seed: a ¥60 order paid with a ¥10 red packet, ¥50 paid → ¥4 back.
    rules = ruleset(rule("cashback", "cash", rate_bp=800, requires_red_packet=True))
    paid_with_packet = order(6000, red_packet=packet(min_spend=Money(0)))

    result = evaluate(paid_with_packet, nobody(), rules, now=NOW, budget_remaining=PLENTY)

    cash = [grant for grant in result.rebates if grant.rule_id == "cash"]
    assert [(grant.amount, grant.basis) for grant in cash] == [(Money(400), "8% of ¥50.00 paid")]


def test_cashback_that_requires_a_red_packet_skips_an_order_without_one() -> None:
    rules = ruleset(rule("cashback", "cash", rate_bp=800, requires_red_packet=True))

    result = evaluate(order(5000), nobody(), rules, now=NOW, budget_remaining=PLENTY)

    assert result.skipped == [Skipped("cash", SkipReason.NO_RED_PACKET)]


def test_ratio_takes_its_rate_of_the_amount_paid_above_its_minimum() -> None:
    rules = ruleset(rule("ratio", "r", rate_bp=333, min_order_fen=10000))

    small = evaluate(order(9999), nobody(), rules, now=NOW, budget_remaining=PLENTY)
    big = evaluate(order(12345, paid=12000), nobody(), rules, now=NOW, budget_remaining=PLENTY)

    assert small.skipped == [Skipped("r", SkipReason.BELOW_MINIMUM)]
    assert amounts(big.grants) == [("r", "buyer", 399)]  # 3.33 % of ¥120.00 = 399.6 fen, floored
    assert big.rebates[0].basis == "3.33% of ¥120.00 paid"


@pytest.mark.parametrize(
    ("total", "expected"),
    [(9999, None), (10000, 200), (29999, 599), (30000, 1500), (49999, 2499), (50000, 4000), (90000, 7200)],
)
def test_ladder_pays_the_rate_of_the_highest_tier_reached(total: int, expected: int | None) -> None:
    tiers = [
        {"min_order_fen": 10000, "rate_bp": 200},
        {"min_order_fen": 30000, "rate_bp": 500},
        {"min_order_fen": 50000, "rate_bp": 800},
    ]

    result = evaluate(
        order(total), nobody(), ruleset(rule("ladder", "l", tiers=tiers)), now=NOW, budget_remaining=PLENTY
    )

    if expected is None:
        assert result.skipped == [Skipped("l", SkipReason.BELOW_MINIMUM)]
    else:
        assert amounts(result.grants) == [("l", "buyer", expected)]


def test_fixed_pays_its_amount_from_its_minimum() -> None:
    rules = ruleset(rule("fixed", "f", amount_fen=888, min_order_fen=5000))

    assert amounts(evaluate(order(5000), nobody(), rules, now=NOW, budget_remaining=PLENTY).grants) == [
        ("f", "buyer", 888)
    ]
    assert evaluate(order(4999), nobody(), rules, now=NOW, budget_remaining=PLENTY).skipped == [
        Skipped("f", SkipReason.BELOW_MINIMUM)
    ]


def test_a_share_that_floors_to_zero_is_skipped_not_granted() -> None:
    rules = ruleset(rule("ratio", "r", rate_bp=100))

    result = evaluate(order(99), nobody(), rules, now=NOW, budget_remaining=PLENTY)

    assert result.grants == []
    assert result.skipped == [Skipped("r", SkipReason.ZERO)]


# ---------------------------------------------------------------- invite and distribution


def test_invite_rewards_both_sides_on_the_invitees_first_paid_order_only() -> None:
    rules = ruleset(rule("invite", "inv", inviter_fen=1000, invitee_fen=500))

    first = evaluate(
        order(100, is_first_paid_order=True, inviter_id=42), nobody(), rules, now=NOW, budget_remaining=PLENTY
    )
    second = evaluate(
        order(100, is_first_paid_order=False, inviter_id=42),
        nobody(),
        rules,
        now=NOW,
        budget_remaining=PLENTY,
    )

    assert [(g.beneficiary, g.beneficiary_id, g.amount.fen) for g in first.rebates] == [
        ("inviter", 42, 1000),
        ("invitee", BUYER, 500),
    ]
    assert second.grants == []
    assert second.skipped == [Skipped("inv", SkipReason.NOT_FIRST_ORDER)]


@pytest.mark.parametrize(
    ("inviter", "reason"), [(None, SkipReason.NO_INVITER), (BUYER, SkipReason.SELF_INVITE)]
)
def test_invite_needs_an_inviter_other_than_the_buyer(inviter: int | None, reason: SkipReason) -> None:
    rules = ruleset(rule("invite", "inv", inviter_fen=1000, invitee_fen=500))
    first = order(100, is_first_paid_order=True, inviter_id=inviter)

    assert evaluate(first, nobody(), rules, now=NOW, budget_remaining=PLENTY).skipped == [
        Skipped("inv", reason)
    ]


def test_distribution_pays_the_two_promoter_levels_on_the_amount_paid() -> None:
    rules = ruleset(rule("distribution", "dist", level1_bp=1000, level2_bp=300))
    attributed = order(10000, paid=9000, promoter_l1=21, promoter_l2=22)

    result = evaluate(attributed, nobody(), rules, now=NOW, budget_remaining=PLENTY)

    assert [(g.beneficiary, g.beneficiary_id, g.amount.fen) for g in result.rebates] == [
        ("promoter_l1", 21, 900),
        ("promoter_l2", 22, 270),
    ]


def test_distribution_with_one_level_or_none() -> None:
    rules = ruleset(rule("distribution", "dist", level1_bp=1000, level2_bp=300))

    one = evaluate(order(10000, promoter_l1=21), nobody(), rules, now=NOW, budget_remaining=PLENTY)
    none = evaluate(order(10000), nobody(), rules, now=NOW, budget_remaining=PLENTY)

    assert [(g.beneficiary, g.amount.fen) for g in one.rebates] == [("promoter_l1", 1000)]
    assert none.skipped == [Skipped("dist", SkipReason.NO_PROMOTER)]


def test_order_facts_cannot_describe_a_broken_promoter_chain() -> None:
    with pytest.raises(ValueError, match="level-1"):
        order(100, promoter_l2=22)
    with pytest.raises(ValueError, match="different"):
        order(100, promoter_l1=22, promoter_l2=22)
    # No third level can even be said.
    with pytest.raises(TypeError):
        order(100, promoter_l1=21, promoter_l2=22, promoter_l3=23)


# ---------------------------------------------------------------- multipliers (双倍返利)


def boost(rule_id: str = "x2", **overrides: object) -> dict[str, object]:
    return (
        rule(
            "multiplier",
            rule_id,
            starts_at=(NOW - timedelta(days=1)).isoformat(),
            ends_at=(NOW + timedelta(days=6)).isoformat(),
            factor_bp=20000,
            applies_to=["r"],
        )
        | overrides
    )


def test_a_multiplier_doubles_a_rebate_inside_its_window_only() -> None:
    # The seed: 10 % of a ¥10 purchase is ¥1, ¥2 during the double-rebate week.
    rules = ruleset(rule("ratio", "r", rate_bp=1000), boost())
    start, end = NOW - timedelta(days=1), NOW + timedelta(days=6)

    def paid_at(moment: object) -> list[tuple[str, str, int]]:
        facts = order(1000, paid_at=moment)
        return amounts(evaluate(facts, nobody(), rules, now=NOW, budget_remaining=PLENTY).grants)

    assert paid_at(start) == [("r", "buyer", 200)]
    assert paid_at(end - timedelta(seconds=1)) == [("r", "buyer", 200)]
    assert paid_at(end) == [("r", "buyer", 100)]
    assert paid_at(start - timedelta(seconds=1)) == [("r", "buyer", 100)]
    outside = evaluate(order(1000, paid_at=end), nobody(), rules, now=NOW, budget_remaining=PLENTY)
    assert outside.skipped == [Skipped("x2", SkipReason.OUTSIDE_WINDOW)]
    inside = evaluate(order(1000), nobody(), rules, now=NOW, budget_remaining=PLENTY)
    assert inside.rebates[0].basis == "10% of ¥10.00 paid ×2 (x2)"


def test_a_boosted_share_is_floored_once_on_the_exact_product() -> None:
    # 0.01 % of ¥99.99 = 0.9999 fen; × 2 = 1.9998 fen → 1, where floor-then-double would give 0.
    doubled = ruleset(rule("ratio", "r", rate_bp=1), boost())
    assert amounts(evaluate(order(9999), nobody(), doubled, now=NOW, budget_remaining=PLENTY).grants) == [
        ("r", "buyer", 1)
    ]


def test_exclusive_multipliers_take_the_highest_priority_and_combinable_ones_compound() -> None:
    rules = ruleset(
        rule("ratio", "r", rate_bp=1000),
        boost("big", priority=20, stacking="exclusive", factor_bp=30000),
        boost("small", priority=10, stacking="exclusive", factor_bp=20000),
        boost("extra", priority=5, stacking="combinable", factor_bp=15000),
    )

    (rebate,) = evaluate(order(1000), nobody(), rules, now=NOW, budget_remaining=PLENTY).rebates

    assert rebate.amount == Money(450)  # 10 % of ¥10 × 3 × 1.5
    assert rebate.basis == "10% of ¥10.00 paid ×3 (big) ×1.5 (extra)"


def test_a_multiplier_of_a_two_way_rule_freezes_boosted_rates_into_the_packet_and_its_worst_case() -> None:
    rules = ruleset(two_way(id="r"), boost())

    (issued,) = evaluate(order(20000), nobody(), rules, now=NOW, budget_remaining=PLENTY).issued

    assert (issued.issuer_rate_bp, issued.buyer_rate_bp) == (2000, 1000)
    assert issued.worst_case_cost == Money(1000 + 20000 + 10000)


# ---------------------------------------------------------------- stacking


def test_only_the_highest_priority_applicable_exclusive_rule_applies_and_combinable_ones_add_up() -> None:
    rules = ruleset(
        rule("ratio", "ten-percent", priority=30, stacking="exclusive", rate_bp=1000, min_order_fen=50000),
        rule("ratio", "five-percent", priority=20, stacking="exclusive", rate_bp=500),
        rule("fixed", "three-yuan", priority=10, stacking="exclusive", amount_fen=300, min_order_fen=0),
        rule("cashback", "cash", priority=5, rate_bp=100),
    )

    result = evaluate(order(10000), nobody(), rules, now=NOW, budget_remaining=PLENTY)

    assert amounts(result.grants) == [("five-percent", "buyer", 500), ("cash", "buyer", 100)]
    assert result.skipped == [
        Skipped("ten-percent", SkipReason.BELOW_MINIMUM),
        Skipped("three-yuan", SkipReason.EXCLUSIVE_APPLIED),
    ]


def test_grants_come_in_priority_then_id_order_whatever_the_document_order() -> None:
    documents = [
        rule("fixed", "b", priority=5, amount_fen=2, min_order_fen=0),
        rule("fixed", "a", priority=5, amount_fen=1, min_order_fen=0),
        rule("fixed", "c", priority=9, amount_fen=3, min_order_fen=0),
    ]

    forward = evaluate(order(100), nobody(), ruleset(*documents), now=NOW, budget_remaining=PLENTY)
    backward = evaluate(order(100), nobody(), ruleset(*documents[::-1]), now=NOW, budget_remaining=PLENTY)

    assert [grant.rule_id for grant in forward.grants] == ["c", "a", "b"]
    assert forward == backward


# ---------------------------------------------------------------- caps and budget


def test_a_per_order_cap_reduces_the_grant_that_crosses_it_and_skips_the_rest() -> None:
    rules = ruleset(
        rule("ratio", "r", priority=20, rate_bp=1000),
        rule("fixed", "f", priority=10, amount_fen=300, min_order_fen=0),
        rule("fixed", "g", priority=5, amount_fen=300, min_order_fen=0),
        caps={"per_order_fen": 1200},
    )

    result = evaluate(order(10000), nobody(), rules, now=NOW, budget_remaining=PLENTY)

    assert amounts(result.grants) == [("r", "buyer", 1000), ("f", "buyer", 200)]
    assert result.rebates[1].basis == "fixed ¥3.00; reduced to ¥2.00 by the per-order cap"
    assert result.skipped == [Skipped("g", SkipReason.CAP_REACHED)]


def test_per_user_caps_count_what_the_buyer_already_received() -> None:
    rules = ruleset(
        rule("ratio", "r", rate_bp=1000),
        caps={"per_user_day_fen": 2000, "per_user_week_fen": 5000, "per_user_month_fen": 9000},
    )

    def granted(**already: int) -> list[tuple[str, str, int]]:
        user = UserFacts(**{name: Money(fen) for name, fen in already.items()})
        return amounts(evaluate(order(10000), user, rules, now=NOW, budget_remaining=PLENTY).grants)

    assert granted() == [("r", "buyer", 1000)]
    assert granted(granted_today=1500) == [("r", "buyer", 500)]
    assert granted(granted_this_week=4700) == [("r", "buyer", 300)]
    assert granted(granted_this_month=8800) == [("r", "buyer", 200)]
    assert granted(granted_today=2500) == []


def test_per_user_caps_bound_the_buyer_not_the_promoters() -> None:
    rules = ruleset(
        rule("ratio", "r", priority=20, rate_bp=1000),
        rule("distribution", "dist", level1_bp=1000, level2_bp=500),
        caps={"per_user_day_fen": 300},
    )

    result = evaluate(order(10000, promoter_l1=21), nobody(), rules, now=NOW, budget_remaining=PLENTY)

    assert amounts(result.grants) == [("r", "buyer", 300), ("dist", "promoter_l1", 1000)]


def test_grants_that_do_not_fit_the_budget_are_skipped_whole_in_priority_order() -> None:
    rules = ruleset(
        two_way(priority=100),
        rule("ratio", "r", priority=50, rate_bp=1000),  # 2 000 fen
        rule("fixed", "f", priority=10, amount_fen=300, min_order_fen=0),
    )

    result = evaluate(order(20000), nobody(), rules, now=NOW, budget_remaining=Money(16000 + 1000))

    assert [grant.rule_id for grant in result.grants] == ["two-way", "f"]
    assert result.skipped == [Skipped("r", SkipReason.BUDGET_EXHAUSTED)]
    assert result.cost == Money(16300)


def test_a_red_packet_is_not_issued_when_its_worst_case_does_not_fit() -> None:
    result = evaluate(order(20000), nobody(), ruleset(two_way()), now=NOW, budget_remaining=Money(15999))

    assert result.grants == []
    assert result.skipped == [Skipped("two-way", SkipReason.BUDGET_EXHAUSTED)]


# ---------------------------------------------------------------- facts


def test_facts_refuse_inconsistent_amounts_and_naive_times() -> None:
    with pytest.raises(ValueError, match="paid_fen"):
        OrderFacts(order_id=1, consumer_id=1, total_fen=Money(100), paid_fen=Money(80), paid_at=NOW)
    with pytest.raises(ValueError, match="aware"):
        order(100, paid_at=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="aware"):
        evaluate(order(100), nobody(), ruleset(), now=NOW.replace(tzinfo=None), budget_remaining=PLENTY)
    with pytest.raises(ValueError, match="budget"):
        evaluate(order(100), nobody(), ruleset(), now=NOW, budget_remaining=Money(-1))
