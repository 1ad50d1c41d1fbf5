"""Campaign stats: packets by state, ledger budget, cost booked net of refunds, GMV driven, redemption
rate and ROI as decimal strings; and funding from the platform budget (admins only)."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.auth.principals import Role
from app.core.db import utcnow
from app.extensions import db
from app.payments.models import Refund
from app.red_packets.service import expire_red_packets
from jobs.payments import submit_refund
from tests.campaigns.conftest import SEED_WORST_CASE, Consoles, MakeCampaign
from tests.console_client import Console
from tests.factories import make_staff
from tests.payments.conftest import Shop


def test_stats_after_the_seed_scenario(shop: Shop, consoles: Consoles, make_campaign: MakeCampaign) -> None:
    campaign = make_campaign()
    path = f"/api/console/v1/campaigns/{campaign}/stats"
    empty = consoles.viewer.get(path).json
    assert (empty["redemption_rate"], empty["roi"], empty["cost_fen"]) == (None, None, 0)

    first = shop.register("ST-1", 20000)
    shop.pay(first["id"])
    packet = shop.client.get("/api/mp/v1/red-packets", headers=shop.consumer_headers).json[0]
    second = shop.register("ST-2", 5000)
    assert shop.pay_params(second["id"], red_packet_id=packet["id"]).status_code == 200
    shop.sandbox.post(f"/transactions/{shop.out_trade_no(second['id'])}/pay", {"mchid": shop.merchant.mchid})
    # A second packet, issued by staff, left to expire.
    issued = consoles.operator.post(
        f"/api/console/v1/campaigns/{campaign}/red-packets",
        json={"consumer_id": shop.consumer_id, "rule_id": "two-way", "idempotency_key": "stats-0001"},
    )
    assert issued.status_code == 201
    live = consoles.viewer.get(path).json
    assert live["packets"] == {"issued": 2, "live": 1, "redeemed": 1, "expired": 0, "revoked": 0}
    assert live["budget_reserved_fen"] == SEED_WORST_CASE
    expire_red_packets(now=utcnow() + timedelta(days=31))

    stats = consoles.viewer.get(path).json
    assert stats["packets"] == {"issued": 2, "live": 0, "redeemed": 1, "expired": 1, "revoked": 0}
    assert (stats["budget_remaining_fen"], stats["budget_reserved_fen"]) == (100000 - 1750, 0)
    assert (stats["booked_fen"], stats["reversed_fen"], stats["cost_fen"]) == (1750, 0, 1750)
    assert stats["gmv_driven_fen"] == 5000
    assert stats["redemption_rate"] == "0.5000"
    assert stats["roi"] == "1.8571"  # (5000 − 1750) / 1750, rounded down
    assert stats["skip_stats"] == {}

    # A refund of half of what was paid reverses half of each grant and takes ¥20 off the GMV driven.
    refund = shop.refund("ST-2", "ST-R1", 2000)
    assert refund.status_code == 202
    row = db.session.scalars(select(Refund).where(Refund.out_refund_no == "ST-R1")).one()
    submit_refund(row.id)
    shop.sandbox.post(
        f"/refunds/{row.wechat_refund_no}/resolve", {"mchid": shop.merchant.mchid, "status": "SUCCESS"}
    )
    after = consoles.viewer.get(path).json
    assert (after["booked_fen"], after["reversed_fen"], after["cost_fen"]) == (1750, 875, 875)
    assert after["gmv_driven_fen"] == 3000
    assert after["roi"] == "2.4285"  # (3000 − 875) / 875 = 2.428571…


def test_only_platform_admins_fund_from_the_platform_budget(
    shop: Shop, app: Flask, client: FlaskClient, consoles: Consoles, make_campaign: MakeCampaign
) -> None:
    campaign = make_campaign(fund_fen=0, activate=False)
    funded = app.test_cli_runner().invoke(
        args=["budgets", "fund-platform", "--amount-fen", "5000", "--key", "p-1"]
    )
    assert funded.exit_code == 0, funded.output
    body = {"amount_fen": 5000, "source": "platform", "idempotency_key": "platform-0001"}
    path = f"/api/console/v1/campaigns/{campaign}/fund"
    finance = Console(app.test_client(), shop.merchant.slug).login(
        make_staff(merchant=shop.merchant, role=Role.FINANCE).email
    )
    refused = finance.post(path, json=body)
    assert refused.status_code == 403 and "platform admins" in refused.json["error"]["message"]
    assert consoles.owner.post(path, json=body).status_code == 403  # the merchant's owner is not an admin
    admin = Console(client, shop.merchant.slug).login(make_staff(is_platform_admin=True).email)
    done = admin.post(path, json=body)
    assert done.status_code == 200, done.json
    assert done.json["budget_remaining_fen"] == 5000
