"""Replay: the merchant's real paid orders (through the sandbox) under the current rules and a draft,
beside what the live rules booked; nothing is written."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.core.db import utcnow
from app.extensions import db
from app.orders.models import Order
from tests.campaigns.conftest import SEED_TWO_WAY, SEED_WORST_CASE, Consoles, MakeCampaign, row_counts
from tests.payments.conftest import Shop


def _replay(consoles: Consoles, campaign: int, **body: Any) -> Any:
    response = consoles.operator.post(f"/api/console/v1/campaigns/{campaign}/replay", json=body)
    assert response.status_code == 200, response.json
    return response.json


def _seed_orders(shop: Shop) -> list[int]:
    """¥200 (earns the packet), ¥50 paid with it, ¥80 without one."""
    first = shop.register("RP-1", 20000)
    shop.pay(first["id"])
    packets = shop.client.get("/api/mp/v1/red-packets", headers=shop.consumer_headers).json
    second = shop.register("RP-2", 5000)
    pay = shop.pay_params(second["id"], red_packet_id=packets[0]["id"])
    assert pay.status_code == 200, pay.json
    shop.sandbox.post(f"/transactions/{shop.out_trade_no(second['id'])}/pay", {"mchid": shop.merchant.mchid})
    third = shop.register("RP-3", 8000)
    shop.pay(third["id"])
    return [first["id"], second["id"], third["id"]]


def _totals(tally: dict[str, Any]) -> tuple[Any, ...]:
    return (
        tally["grants"],
        tally["booked_fen"],
        tally["cost_fen"],
        tally["packets_issued"],
        tally["packets_redeemed"],
        tally["worst_case_issued_fen"],
        tally["gmv_driven_fen"],
        tally["redemption_rate"],
        tally["roi"],
    )


def test_the_current_rules_replayed_match_what_was_booked(
    shop: Shop, consoles: Consoles, make_campaign: MakeCampaign, db_session: Session
) -> None:
    campaign = make_campaign()
    _seed_orders(shop)
    before = row_counts(db_session)
    result = _replay(consoles, campaign, days=1)
    assert row_counts(db_session) == before
    assert (result["orders"], result["order_limit"], result["truncated"]) == (3, 20000, False)
    assert result["rules_version"] == 1
    # Discount 1000 + issuer 500 + buyer 250; ROI = (5000 − 1750) / 1750, rounded down.
    expected = (3, 1750, 1750, 1, 1, SEED_WORST_CASE, 5000, "1.0000", "1.8571")
    assert _totals(result["simulated"]) == expected
    assert _totals(result["live"]) == expected
    simulated = result["simulated"]
    assert simulated["budget_start_fen"] == 100000 - 1750  # remaining + reserved now
    assert simulated["budget_end_fen"] == 100000 - 1750 - 1750
    assert (simulated["packets_live"], simulated["liability_outstanding_fen"]) == (0, 0)
    assert simulated["skipped"] == {"below minimum": 2}
    # The days add up to the whole (the replay may straddle midnight in China).
    for side in ("simulated", "live"):
        assert sum(day[side]["booked_fen"] for day in result["per_day"]) == 1750
        assert sum(day[side]["orders"] for day in result["per_day"]) == 3


def test_a_draft_forecasts_more_packets_and_their_liability(
    shop: Shop, consoles: Consoles, make_campaign: MakeCampaign, db_session: Session
) -> None:
    campaign = make_campaign()
    _seed_orders(shop)
    draft = {"rules": [SEED_TWO_WAY | {"trigger_min_order_fen": 5000, "buyer_rate_bp": 1000}]}
    before = row_counts(db_session)
    result = _replay(consoles, campaign, days=7, rules=draft)
    assert row_counts(db_session) == before
    assert result["rules_version"] is None
    simulated = result["simulated"]
    worst = 1000 + 10000 + 10000
    # Every order now earns a packet; the ¥50 order spends the first one (10% and 10% of ¥50).
    assert _totals(simulated) == (3, 2000, 2000, 3, 1, 3 * worst, 5000, "0.3333", "1.5000")
    assert (simulated["packets_live"], simulated["liability_outstanding_fen"]) == (2, 2 * worst)
    assert simulated["budget_end_fen"] == simulated["budget_start_fen"] - 2000 - 2 * worst
    # What really happened is unchanged beside it.
    assert _totals(result["live"]) == (3, 1750, 1750, 1, 1, SEED_WORST_CASE, 5000, "1.0000", "1.8571")


def test_a_small_budget_skips_the_packet_and_its_redemption(
    shop: Shop, consoles: Consoles, make_campaign: MakeCampaign
) -> None:
    campaign = make_campaign()
    _seed_orders(shop)
    simulated = _replay(consoles, campaign, days=1, budget_fen=10000)["simulated"]
    # No simulated packet, so the ¥50 order is replayed as paid in full: nothing to redeem.
    assert _totals(simulated)[:5] == (0, 0, 0, 0, 0)
    assert simulated["skipped"] == {"budget exhausted": 1, "below minimum": 2}
    assert (simulated["redemption_rate"], simulated["roi"]) == (None, None)


def test_only_orders_paid_in_the_window_are_replayed(
    shop: Shop, consoles: Consoles, make_campaign: MakeCampaign
) -> None:
    campaign = make_campaign()
    ids = _seed_orders(shop)
    third = db.session.get(Order, ids[2])
    assert third is not None
    third.paid_at = utcnow() - timedelta(days=3)
    db.session.flush()
    assert _replay(consoles, campaign, days=1)["orders"] == 2
    assert _replay(consoles, campaign, days=4)["orders"] == 3
    for days in (0, 91):
        response = consoles.operator.post(f"/api/console/v1/campaigns/{campaign}/replay", json={"days": days})
        assert response.status_code == 422
        assert "days" in response.json["error"]["details"]["fields"]
