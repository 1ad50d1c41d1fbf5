"""Preview: one described order through the rules (current or draft), with the seed numbers; nothing
is written."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from app.auth.principals import Role
from tests.campaigns.conftest import (
    SEED_RULES,
    SEED_TWO_WAY,
    SEED_WORST_CASE,
    Consoles,
    MakeCampaign,
    row_counts,
)
from tests.console_client import Console
from tests.factories import make_merchant, make_staff
from tests.payments.conftest import Shop


def _preview(console: Console, campaign_id: int, **body: Any) -> Any:
    response = console.post(f"/api/console/v1/campaigns/{campaign_id}/preview", json=body)
    assert response.status_code == 200, response.json
    return response.json


def _summary(result: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    return [(g["kind"], g["rule_id"], g["beneficiary"], g["amount_fen"]) for g in result["grants"]]


def test_a_200_yuan_order_earns_the_seed_packet(consoles: Consoles, make_campaign: MakeCampaign) -> None:
    campaign = make_campaign()
    result = _preview(consoles.operator, campaign, order={"total_fen": 20000})
    assert result["rules_version"] == 1
    assert result["budget_fen"] == 100000
    assert _summary(result) == [("red_packet", "two-way", "buyer", 1000)]
    packet = result["grants"][0]
    assert (packet["worst_case_cost_fen"], packet["min_spend_fen"], packet["paid_from"]) == (
        SEED_WORST_CASE,
        5000,
        "budget",
    )
    assert (packet["issuer_rate_bp"], packet["buyer_rate_bp"], packet["max_order_fen"]) == (1000, 500, 100000)
    assert result["skipped"] == []
    assert (result["booked_fen"], result["reserved_fen"], result["total_cost_fen"]) == (0, 16000, 16000)


def test_a_50_yuan_order_spending_the_packet_pays_500_and_250(
    consoles: Consoles, make_campaign: MakeCampaign
) -> None:
    campaign = make_campaign()
    described = {
        "face_value_fen": 1000,
        "issuer_rate_bp": 1000,
        "buyer_rate_bp": 500,
        "min_spend_fen": 5000,
        "max_order_fen": 100000,
    }
    result = _preview(consoles.operator, campaign, order={"total_fen": 5000, "red_packet": described})
    assert result["order"]["paid_fen"] == 4000 and result["order"]["discount_fen"] == 1000
    assert _summary(result) == [
        ("red_packet_discount", "two-way", "merchant", 1000),
        ("rebate", "two-way", "issuer_merchant", 500),
        ("rebate", "two-way", "buyer", 250),
    ]
    assert {g["paid_from"] for g in result["grants"]} == {"red_packet_reservation"}
    assert result["skipped"] == [{"rule_id": "two-way", "reason": "below minimum"}]  # no new packet
    assert (result["booked_fen"], result["reserved_fen"], result["total_cost_fen"]) == (1750, 0, 1750)
    # An empty description takes the packet of the rules' two-way rule: the same answer.
    assert _summary(_preview(consoles.operator, campaign, order={"total_fen": 5000, "red_packet": {}})) == (
        _summary(result)
    )


def test_preview_writes_nothing(consoles: Consoles, make_campaign: MakeCampaign, db_session: Session) -> None:
    funded = make_campaign()
    unfunded = make_campaign(fund_fen=0, activate=False)
    before = row_counts(db_session)
    _preview(consoles.operator, funded, order={"total_fen": 20000})
    _preview(consoles.operator, funded, order={"total_fen": 5000, "red_packet": {}})
    # Not even the campaign's ledger accounts are created for a campaign never funded.
    result = _preview(consoles.operator, unfunded, order={"total_fen": 20000})
    assert result["budget_fen"] == 0
    assert result["skipped"] == [{"rule_id": "two-way", "reason": "budget exhausted"}]
    assert row_counts(db_session) == before
    stats = consoles.viewer.get(f"/api/console/v1/campaigns/{funded}/stats").json
    assert stats["packets"]["issued"] == 0 and stats["budget_remaining_fen"] == 100000


def test_a_draft_is_previewed_without_becoming_a_version(
    consoles: Consoles, make_campaign: MakeCampaign
) -> None:
    campaign = make_campaign()
    draft = {
        "rules": [
            SEED_TWO_WAY | {"trigger_min_order_fen": 10000, "buyer_rate_bp": 800},
            {
                "id": "invite",
                "kind": "invite",
                "priority": 5,
                "stacking": "combinable",
                "inviter_fen": 500,
                "invitee_fen": 300,
            },
            {
                "id": "dist",
                "kind": "distribution",
                "priority": 1,
                "stacking": "combinable",
                "level1_bp": 300,
                "level2_bp": 100,
            },
        ],
        "caps": {"per_order_fen": 700},
    }
    order = {"total_fen": 10000, "is_first_paid_order": True, "has_inviter": True, "promoter_levels": 2}
    result = _preview(consoles.operator, campaign, order=order, rules=draft, budget_fen=50000)
    assert result["rules_version"] is None and result["budget_fen"] == 50000
    assert _summary(result) == [
        ("red_packet", "two-way", "buyer", 1000),
        ("rebate", "invite", "inviter", 500),
        ("rebate", "invite", "invitee", 200),  # 300, reduced by what the per-order cap of 700 left
    ]
    assert "per-order cap" in result["grants"][2]["basis"]
    assert result["skipped"] == [{"rule_id": "dist", "reason": "cap reached"}] * 2
    assert result["grants"][0]["worst_case_cost_fen"] == 1000 + 10000 + 8000
    # The campaign still runs version 1.
    assert consoles.viewer.get(f"/api/console/v1/campaigns/{campaign}").json["rules_version"] == 1


def test_invalid_input_is_a_422_naming_the_field(consoles: Consoles, make_campaign: MakeCampaign) -> None:
    campaign = make_campaign()
    path = f"/api/console/v1/campaigns/{campaign}/preview"
    bad_rules = consoles.operator.post(
        path,
        json={"order": {"total_fen": 100}, "rules": {"rules": [SEED_TWO_WAY | {"issuer_rate_bp": 20000}]}},
    )
    assert bad_rules.status_code == 422
    assert "rules.0.issuer_rate_bp" in bad_rules.json["error"]["details"]["fields"]
    below = consoles.operator.post(path, json={"order": {"total_fen": 4000, "red_packet": {}}})
    assert below.status_code == 422
    no_two_way = consoles.operator.post(
        path,
        json={
            "order": {"total_fen": 6000, "red_packet": {}},
            "rules": {
                "rules": [
                    {"id": "r", "kind": "ratio", "priority": 1, "stacking": "exclusive", "rate_bp": 100}
                ]
            },
        },
    )
    assert no_two_way.status_code == 422
    assert "order.red_packet.face_value_fen" in no_two_way.json["error"]["details"]["fields"]
    too_little_paid = consoles.operator.post(
        path, json={"order": {"total_fen": 6000, "paid_fen": 4000, "red_packet": {}}}
    )
    assert too_little_paid.status_code == 422
    assert "order.paid_fen" in too_little_paid.json["error"]["details"]["fields"]
    levels = consoles.operator.post(path, json={"order": {"total_fen": 100, "promoter_levels": 3}})
    assert levels.status_code == 422


def test_viewers_cannot_preview_or_replay(consoles: Consoles, make_campaign: MakeCampaign) -> None:
    campaign = make_campaign()
    preview = consoles.viewer.post(
        f"/api/console/v1/campaigns/{campaign}/preview", json={"order": {"total_fen": 1}}
    )
    replay = consoles.viewer.post(f"/api/console/v1/campaigns/{campaign}/replay", json={"days": 7})
    assert preview.status_code == replay.status_code == 403


def test_another_merchants_campaign_is_not_found(shop: Shop, consoles: Consoles, client: FlaskClient) -> None:
    other = make_merchant("other-tea")
    owner = make_staff(merchant=other, role=Role.OWNER)
    theirs = Console(client, other.slug).login(owner.email)
    created = theirs.post(
        "/api/console/v1/campaigns",
        json={
            "name": "theirs",
            "starts_at": "2026-01-01T00:00:00+00:00",
            "ends_at": "2027-01-01T00:00:00+00:00",
            "rules": SEED_RULES,
        },
    )
    assert created.status_code == 201
    campaign = created.json["id"]
    base = f"/api/console/v1/campaigns/{campaign}"
    assert consoles.operator.post(f"{base}/preview", json={"order": {"total_fen": 20000}}).status_code == 404
    assert consoles.operator.post(f"{base}/replay", json={"days": 1}).status_code == 404
    assert consoles.viewer.get(f"{base}/stats").status_code == 404
    issued = consoles.operator.post(
        f"{base}/red-packets",
        json={"consumer_id": shop.consumer_id, "rule_id": "two-way", "idempotency_key": "cross-0001"},
    )
    assert issued.status_code == 404
