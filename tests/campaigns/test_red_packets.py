"""Red packets issued by staff: the rule's packet, its worst case reserved, refused when the budget is
short (counted in skip_stats), audited, idempotent."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEntry
from app.core.db import utcnow
from app.ledger.accounts import campaign_accounts
from tests.campaigns.conftest import SEED_RULES, SEED_WORST_CASE, Consoles, MakeCampaign, row_counts
from tests.factories import make_consumer, make_merchant
from tests.payments.conftest import Shop


def _issue(consoles: Consoles, campaign: int, consumer_id: int, key: str = "staff-0001", **extra: Any) -> Any:
    body = {"consumer_id": consumer_id, "rule_id": "two-way", "idempotency_key": key} | extra
    return consoles.operator.post(f"/api/console/v1/campaigns/{campaign}/red-packets", json=body)


def test_an_issued_packet_reserves_its_worst_case(
    shop: Shop, consoles: Consoles, make_campaign: MakeCampaign, db_session: Session
) -> None:
    campaign = make_campaign()
    issued = _issue(consoles, campaign, shop.consumer_id)
    assert issued.status_code == 201, issued.json
    packet = issued.json
    assert (packet["face_value_fen"], packet["min_spend_fen"], packet["status"]) == (1000, 5000, "issued")
    assert (packet["issuer_rate_bp"], packet["buyer_rate_bp"], packet["max_order_fen"]) == (1000, 500, 100000)
    assert packet["reserved_fen"] == SEED_WORST_CASE and packet["consumer_id"] == shop.consumer_id
    budget = campaign_accounts(shop.merchant.id, campaign)
    assert (budget.budget.balance.fen, budget.reserved.balance.fen) == (
        100000 - SEED_WORST_CASE,
        SEED_WORST_CASE,
    )
    audit = db_session.scalars(
        select(AuditEntry).where(AuditEntry.action == "campaign.red_packet.issue")
    ).one()
    assert audit.target_id == str(packet["id"]) and audit.after is not None
    assert audit.after["reserved_fen"] == SEED_WORST_CASE
    # The consumer holds it and can spend it: the seed legs are booked from its reservation.
    mine = shop.client.get("/api/mp/v1/red-packets", headers=shop.consumer_headers).json
    assert [p["id"] for p in mine] == [packet["id"]]
    order = shop.register("STAFF-1", 5000)
    assert shop.pay_params(order["id"], red_packet_id=packet["id"]).status_code == 200
    shop.sandbox.post(f"/transactions/{shop.out_trade_no(order['id'])}/pay", {"mchid": shop.merchant.mchid})
    wallet = shop.client.get("/api/mp/v1/wallet", headers=shop.consumer_headers).json
    assert wallet["pending_fen"] == 250
    assert (budget.budget.balance.fen, budget.reserved.balance.fen) == (100000 - 1750, 0)


def test_the_same_key_issues_once(
    shop: Shop, consoles: Consoles, make_campaign: MakeCampaign, db_session: Session
) -> None:
    campaign = make_campaign()
    first = _issue(consoles, campaign, shop.consumer_id)
    before = row_counts(db_session)
    again = _issue(consoles, campaign, shop.consumer_id)
    assert again.status_code == 201 and again.json["id"] == first.json["id"]
    assert row_counts(db_session) == before
    other = _issue(consoles, campaign, make_consumer(shop.merchant).id)
    assert other.status_code == 409  # the key already issued a packet to someone else


def test_a_short_budget_refuses_and_counts_it(
    shop: Shop, consoles: Consoles, make_campaign: MakeCampaign, db_session: Session
) -> None:
    campaign = make_campaign(fund_fen=SEED_WORST_CASE - 1)
    refused = _issue(consoles, campaign, shop.consumer_id)
    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "insufficient_funds"
    assert refused.json["error"]["details"]["shortfall_fen"] == 1
    view = consoles.viewer.get(f"/api/console/v1/campaigns/{campaign}").json
    assert view["skip_stats"] == {"budget exhausted": 1}
    assert (view["budget_remaining_fen"], view["budget_reserved_fen"]) == (SEED_WORST_CASE - 1, 0)
    assert consoles.viewer.get(f"/api/console/v1/campaigns/{campaign}/stats").json["packets"]["issued"] == 0
    actions = db_session.scalars(select(AuditEntry.action).where(AuditEntry.target_id == str(campaign))).all()
    assert "campaign.red_packet.refused" in actions


def test_refusals_of_who_and_what(shop: Shop, consoles: Consoles, make_campaign: MakeCampaign) -> None:
    campaign = make_campaign(
        rules={
            "rules": [
                *SEED_RULES["rules"],
                {"id": "r", "kind": "ratio", "priority": 1, "stacking": "combinable", "rate_bp": 100},
            ]
        }
    )
    stranger = make_consumer(make_merchant("elsewhere"))
    assert _issue(consoles, campaign, stranger.id).status_code == 404
    not_two_way = _issue(consoles, campaign, shop.consumer_id, rule_id="r")
    assert not_two_way.status_code == 422
    assert "rule_id" in not_two_way.json["error"]["details"]["fields"]
    assert _issue(consoles, campaign, shop.consumer_id, rule_id="nope").status_code == 422
    viewer = consoles.viewer.post(
        f"/api/console/v1/campaigns/{campaign}/red-packets",
        json={"consumer_id": shop.consumer_id, "rule_id": "two-way", "idempotency_key": "viewer-0001"},
    )
    assert viewer.status_code == 403
    ended = consoles.owner.post(f"/api/console/v1/campaigns/{campaign}/status", json={"to": "ended"})
    assert ended.status_code == 200
    assert _issue(consoles, campaign, shop.consumer_id).status_code == 409


def test_an_active_multiplier_is_frozen_into_the_packet(
    shop: Shop, consoles: Consoles, make_campaign: MakeCampaign
) -> None:
    now = utcnow()
    double = {
        "id": "launch-week",
        "kind": "multiplier",
        "priority": 1,
        "stacking": "exclusive",
        "starts_at": (now - timedelta(days=1)).isoformat(),
        "ends_at": (now + timedelta(days=6)).isoformat(),
        "factor_bp": 20000,
        "applies_to": ["two-way"],
    }
    campaign = make_campaign(rules={"rules": [*SEED_RULES["rules"], double]})
    packet = _issue(consoles, campaign, shop.consumer_id).json
    assert (packet["issuer_rate_bp"], packet["buyer_rate_bp"]) == (2000, 1000)
    assert packet["reserved_fen"] == 1000 + 20000 + 10000
