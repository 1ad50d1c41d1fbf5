"""Rule documents: every kind loads into its typed rule; every mistake names its field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from app.core.errors import InvalidInput
from app.core.money import Money
from app.rebates.ruledoc import stored_rules
from app.rebates.rules import (
    Caps,
    CashbackRule,
    DistributionRule,
    FixedRule,
    InviteRule,
    LadderRule,
    LadderTier,
    MultiplierRule,
    RatioRule,
    RuleDocumentError,
    RuleSet,
    Stacking,
    TwoWayRule,
    load_rules,
)
from tests.rebates.builders import rule, two_way

WINDOW: dict[str, Any] = {"starts_at": "2026-12-01T00:00:00+08:00", "ends_at": "2026-12-08T00:00:00+08:00"}


def every_kind() -> dict[str, Any]:
    return {
        "rules": [
            two_way(issuer_cap_fen=5000),
            rule("ratio", "ratio", priority=1, rate_bp=300),
            rule(
                "ladder",
                "ladder",
                tiers=[{"min_order_fen": 0, "rate_bp": 100}, {"min_order_fen": 500, "rate_bp": 200}],
            ),
            rule("fixed", "fixed", stacking="exclusive", amount_fen=500, min_order_fen=1000),
            rule("cashback", "cash", rate_bp=800, requires_red_packet=True),
            rule("invite", "invite", inviter_fen=1000, invitee_fen=500),
            rule("distribution", "dist", level1_bp=1000, level2_bp=300),
            rule("multiplier", "x2", priority=0, factor_bp=20000, applies_to=["ratio", "two-way"], **WINDOW),
        ],
        "caps": {"per_order_fen": 10000, "per_user_month_fen": 50000},
    }


def fields_of(document: Any) -> dict[str, list[str]]:
    with pytest.raises(RuleDocumentError) as caught:
        load_rules(document)
    fields: dict[str, list[str]] = caught.value.details["fields"]
    return fields


def test_every_kind_loads_into_its_typed_rule_in_priority_then_id_order() -> None:
    ruleset = load_rules(every_kind())

    assert [type(rule) for rule in ruleset.rules] == [
        TwoWayRule,  # 100
        CashbackRule,  # 10, "cash"
        DistributionRule,  # 10, "dist"
        FixedRule,
        InviteRule,
        LadderRule,
        RatioRule,  # 1
        MultiplierRule,  # 0
    ]
    assert ruleset.get("two-way") == TwoWayRule(
        id="two-way",
        priority=100,
        stacking=Stacking.COMBINABLE,
        trigger_min_order_fen=Money(20000),
        packet_value_fen=Money(1000),
        packet_min_spend_fen=Money(5000),
        packet_valid_days=30,
        issuer_rate_bp=1000,
        buyer_rate_bp=500,
        max_order_fen=Money(100000),
        issuer_cap_fen=Money(5000),
        buyer_cap_fen=None,
    )
    assert ruleset.get("ladder") == LadderRule(
        id="ladder",
        priority=10,
        stacking=Stacking.COMBINABLE,
        tiers=(
            LadderTier(min_order_fen=Money(0), rate_bp=100),
            LadderTier(min_order_fen=Money(500), rate_bp=200),
        ),
    )
    multiplier = ruleset.get("x2")
    assert isinstance(multiplier, MultiplierRule)
    assert multiplier.starts_at == datetime(2026, 11, 30, 16, tzinfo=UTC)
    assert multiplier.applies_to == ("ratio", "two-way")
    assert ruleset.caps == Caps(per_order_fen=Money(10000), per_user_month_fen=Money(50000))
    assert ruleset.get("missing") is None


def test_defaults_an_empty_set_and_no_caps() -> None:
    assert load_rules({"rules": []}) == RuleSet((), Caps())
    ratio = load_rules({"rules": [rule("ratio", "r", rate_bp=1)]}).get("r")
    assert ratio == RatioRule(
        id="r", priority=10, stacking=Stacking.COMBINABLE, rate_bp=1, min_order_fen=Money(0)
    )


def test_a_bad_document_is_a_422_domain_error_whose_message_names_the_field() -> None:
    document = {"rules": [two_way(issuer_rate_bp=10001)]}

    with pytest.raises(InvalidInput) as caught:
        load_rules(document)

    assert caught.value.status == 422
    assert (
        caught.value.message
        == "invalid rule document: rules.0.issuer_rate_bp: Must be 0 to 10000 basis points."
    )
    assert caught.value.details == {
        "fields": {"rules.0.issuer_rate_bp": ["Must be 0 to 10000 basis points."]}
    }


@pytest.mark.parametrize(
    ("bad_rule", "field"),
    [
        (two_way(packet_value_fen=0), "packet_value_fen"),
        (two_way(trigger_min_order_fen=1.5), "trigger_min_order_fen"),
        (two_way(buyer_rate_bp=True), "buyer_rate_bp"),
        (two_way(buyer_rate_bp="500"), "buyer_rate_bp"),
        (two_way(packet_valid_days=0), "packet_valid_days"),
        (two_way(max_order_fen=4999), "max_order_fen"),
        (two_way(buyer_cap_fen=-1), "buyer_cap_fen"),
        (two_way(stacking="both"), "stacking"),
        (two_way(priority="high"), "priority"),
        (two_way(id="no spaces"), "id"),
        (two_way(colour="red"), "colour"),
        ({"id": "x", "kind": "pyramid", "priority": 1, "stacking": "exclusive"}, "kind"),
        (rule("ratio", "r", rate_bp=-1), "rate_bp"),
        (rule("fixed", "f", amount_fen=100), "min_order_fen"),
        (rule("cashback", "c", rate_bp=800, requires_red_packet="yes"), "requires_red_packet"),
        (rule("cashback", "c", rate_bp=800, requires_red_packet=1), "requires_red_packet"),
        (rule("invite", "i", inviter_fen=100), "invitee_fen"),
        (rule("distribution", "d", level1_bp=1000, level2_bp=300, level3_bp=100), "level3_bp"),
        (rule("distribution", "d", level1_bp=1000, level2_bp=300, levels=[1000, 300, 100]), "levels"),
        (rule("ladder", "l", tiers=[]), "tiers"),
        (
            rule(
                "ladder",
                "l",
                tiers=[{"min_order_fen": 0, "rate_bp": 100}, {"min_order_fen": 0, "rate_bp": 200}],
            ),
            "tiers.1.min_order_fen",
        ),
        (
            rule(
                "ladder",
                "l",
                tiers=[{"min_order_fen": 0, "rate_bp": 200}, {"min_order_fen": 10, "rate_bp": 200}],
            ),
            "tiers.1.rate_bp",
        ),
        (rule("ladder", "l", tiers=[{"min_order_fen": 0}]), "tiers.0.rate_bp"),
    ],
)
def test_each_bad_field_is_named_with_its_path(bad_rule: dict[str, Any], field: str) -> None:
    document = {"rules": [rule("fixed", "ok", amount_fen=1, min_order_fen=0), bad_rule]}

    assert list(fields_of(document)) == [f"rules.1.{field}"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"factor_bp": 9999}, "factor_bp"),
        ({"factor_bp": 100001}, "factor_bp"),
        ({"ends_at": "2026-12-01T00:00:00+08:00"}, "ends_at"),
        ({"starts_at": "2026-12-01T00:00:00"}, "starts_at"),
        ({"applies_to": []}, "applies_to"),
        ({"applies_to": ["ratio", "nowhere"]}, "applies_to.1"),
        ({"applies_to": ["x2"]}, "applies_to.0"),
    ],
)
def test_multiplier_mistakes_are_named(overrides: dict[str, Any], field: str) -> None:
    multiplier = rule("multiplier", "x2", factor_bp=20000, applies_to=["ratio"], **WINDOW) | overrides
    document = {"rules": [rule("ratio", "ratio", rate_bp=100), multiplier]}

    assert list(fields_of(document)) == [f"rules.1.{field}"]


def test_duplicate_ids_name_the_later_rule() -> None:
    document = {
        "rules": [rule("ratio", "same", rate_bp=1), rule("fixed", "same", amount_fen=1, min_order_fen=0)]
    }

    assert fields_of(document) == {"rules.1.id": ["Duplicate rule id 'same'."]}


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ([], "_schema"),
        ({}, "rules"),
        ({"rules": "two_way"}, "rules"),
        ({"rules": ["two_way"]}, "rules.0"),
        ({"rules": [], "caps": {"per_user_day_fen": -5}}, "caps.per_user_day_fen"),
        ({"rules": [], "caps": {"per_year_fen": 5}}, "caps.per_year_fen"),
        ({"rules": [], "version": 2}, "version"),
    ],
)
def test_document_level_mistakes_are_named(document: Any, field: str) -> None:
    assert list(fields_of(document)) == [field]


def test_every_error_of_a_document_is_reported_at_once() -> None:
    document = {"rules": [two_way(issuer_rate_bp=-1, buyer_rate_bp=-1), rule("ratio", "r")]}

    assert sorted(fields_of(document)) == [
        "rules.0.buyer_rate_bp",
        "rules.0.issuer_rate_bp",
        "rules.1.rate_bp",
    ]


def test_a_rule_set_built_by_hand_still_refuses_duplicate_ids() -> None:
    ratio = RatioRule(id="r", priority=1, stacking=Stacking.COMBINABLE, rate_bp=1)

    with pytest.raises(ValueError, match="unique"):
        RuleSet((ratio, ratio))


def test_a_stored_document_is_parsed_once_and_equal_to_a_fresh_load() -> None:
    document = every_kind()
    reordered = {"caps": document["caps"], "rules": document["rules"]}

    first = stored_rules(document)

    assert first == load_rules(document)
    assert stored_rules(reordered) is first  # the same document, whatever its key order
    changed = every_kind()
    changed["rules"][1]["rate_bp"] = 301
    assert stored_rules(changed) is not first
    assert stored_rules(changed) == load_rules(changed)
