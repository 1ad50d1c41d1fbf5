"""The seed scenario end to end through the sandbox: a ¥200 order earns a red packet; a ¥50 order paid
with it books the merchant's 10% and the buyer's 5% pending; receipt + window → available; a partial
refund reverses pro rata. The ledger check is clean after every step."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.db import utcnow
from app.ledger.accounts import campaign_accounts, consumer_accounts, merchant_accounts
from app.ledger.checks import run_checks
from app.payments.models import Refund
from app.rebates.service import settle_due
from jobs.payments import submit_refund
from tests.campaign_setup import start_campaign
from tests.payments.conftest import Shop

TWO_WAY = {
    "rules": [
        {
            "id": "two-way",
            "kind": "two_way",
            "priority": 10,
            "stacking": "combinable",
            "trigger_min_order_fen": 20000,
            "packet_value_fen": 1000,
            "packet_min_spend_fen": 5000,
            "packet_valid_days": 30,
            "issuer_rate_bp": 1000,
            "buyer_rate_bp": 500,
            "max_order_fen": 100000,
        }
    ]
}


def _ledger_clean() -> None:
    failures = [result for result in run_checks() if result.violations]
    assert failures == []


@pytest.fixture
def campaign(shop: Shop, app: Flask, client: FlaskClient, db_session: Session) -> int:
    return start_campaign(shop, app, client, TWO_WAY, name="Two-way launch")


def test_seed_scenario(shop: Shop, campaign: int, db_session: Session) -> None:
    merchant_id = shop.merchant.id
    budget = campaign_accounts(merchant_id, campaign)
    # Order 1: ¥200 earns the buyer a ¥10 red packet; its worst case (10 + 10% and 5% of ¥1000) is reserved.
    first = shop.register("SEED-1", 20000)
    shop.pay(first["id"])
    packets = shop.client.get("/api/mp/v1/red-packets", headers=shop.consumer_headers).json
    assert [(p["face_value_fen"], p["min_spend_fen"], p["status"]) for p in packets] == [
        (1000, 5000, "issued")
    ]
    assert budget.reserved.balance.fen == 1000 + 10000 + 5000
    assert budget.budget.balance.fen == 100000 - 16000
    _ledger_clean()

    # Order 2: ¥50 paid with the packet: the consumer pays ¥40; legs on the ¥50 order.
    second = shop.register("SEED-2", 5000)
    pay = shop.pay_params(second["id"], red_packet_id=packets[0]["id"])
    assert pay.status_code == 200, pay.json
    assert (pay.json["payable_fen"], pay.json["discount_fen"]) == (4000, 1000)
    shop.sandbox.post(f"/transactions/{shop.out_trade_no(second['id'])}/pay", {"mchid": shop.merchant.mchid})
    wallet = shop.client.get("/api/mp/v1/wallet", headers=shop.consumer_headers).json
    assert wallet == {"pending_fen": 250, "available_fen": 0, "withdrawing_fen": 0, "debt_fen": 0}
    merchant_rebate = merchant_accounts(merchant_id).rebate
    assert merchant_rebate.balance.fen == 1000 + 500  # the spent face value, plus the 10% issuer leg
    assert budget.reserved.balance.fen == 0  # what the packet did not cost went back to the budget
    assert budget.budget.balance.fen == 100000 - 1000 - 500 - 250
    _ledger_clean()

    # Received, and the after-sales window passes: pending → available.
    received = shop.client.post(
        "/api/shop/v1/orders/SEED-2/events",
        headers=shop.shop_headers,
        json={"type": "received", "occurred_at": utcnow().isoformat()},
    )
    assert received.status_code == 200
    assert settle_due(now=utcnow() + timedelta(days=6)) == 0  # window still open
    assert settle_due(now=utcnow() + timedelta(days=8)) == 1
    wallet = shop.client.get("/api/mp/v1/wallet", headers=shop.consumer_headers).json
    assert (wallet["pending_fen"], wallet["available_fen"]) == (0, 250)
    _ledger_clean()

    # A partial refund of half of what was paid reverses half of every grant of order 2.
    refund = shop.client.post(
        "/api/shop/v1/orders/SEED-2/refunds",
        headers=shop.shop_headers,
        json={"out_refund_no": "SEED-R1", "amount_fen": 2000},
    )
    assert refund.status_code == 202
    row = db_session.scalars(select(Refund).where(Refund.out_refund_no == "SEED-R1")).one()
    submit_refund(row.id)
    shop.sandbox.post(
        f"/refunds/{row.wechat_refund_no}/resolve", {"mchid": shop.merchant.mchid, "status": "SUCCESS"}
    )
    wallet = shop.client.get("/api/mp/v1/wallet", headers=shop.consumer_headers).json
    assert wallet["available_fen"] == 125
    assert merchant_rebate.balance.fen == 750
    assert budget.budget.balance.fen == 100000 - 1000 - 500 - 250 + 500 + 250 + 125
    lines = shop.client.get("/api/mp/v1/wallet/entries", headers=shop.consumer_headers).json["lines"]
    assert lines[0]["amount_fen"] == -125 and "refund" in lines[0]["explanation"]
    assert consumer_accounts(merchant_id, shop.consumer_id).debt.balance.fen == 0
    _ledger_clean()


CASH_BACK_ON_PACKET_ORDERS = {
    "rules": [
        {**TWO_WAY["rules"][0]},
        {
            "id": "cash-back",
            "kind": "cashback",
            "priority": 5,
            "stacking": "combinable",
            "rate_bp": 800,
            "requires_red_packet": True,
        },
    ]
}


def test_cash_back_on_an_order_paid_partly_with_a_red_packet(
    shop: Shop, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    """Seed: ¥60 order, ¥10 red packet, ¥50 paid → 8% cash-back = ¥4 (on the amount paid)."""
    start_campaign(shop, app, client, CASH_BACK_ON_PACKET_ORDERS, name="Cash-back", deposit_key="bank-2")
    first = shop.register("CB-1", 20000)
    shop.pay(first["id"])  # earns the packet; no cash-back without a packet spent
    packet = shop.client.get("/api/mp/v1/red-packets", headers=shop.consumer_headers).json[0]
    second = shop.register("CB-2", 6000)
    assert shop.pay_params(second["id"], red_packet_id=packet["id"]).json["payable_fen"] == 5000
    shop.sandbox.post(f"/transactions/{shop.out_trade_no(second['id'])}/pay", {"mchid": shop.merchant.mchid})
    # Pending: the buyer leg (5% of ¥60 = 300) plus cash-back (8% of ¥50 paid = 400).
    wallet = shop.client.get("/api/mp/v1/wallet", headers=shop.consumer_headers).json
    assert wallet["pending_fen"] == 300 + 400
    _ledger_clean()


def test_a_cash_campaign_pays_settled_rebates_out_through_the_payout_path(
    shop: Shop, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    """A campaign that pays as cash: once settled, the buyer's rebate leaves as a WeChat transfer."""
    from app.payouts.models import Payout
    from app.withdrawals.models import Withdrawal
    from jobs.payouts import process_payout

    ratio = {
        "rules": [{"id": "ratio", "kind": "ratio", "priority": 1, "stacking": "combinable", "rate_bp": 1000}]
    }
    start_campaign(
        shop, app, client, ratio, name="Cash, as cash", deposit_key="bank-3", pays_out_as_cash=True
    )
    order = shop.register("CASH-1", 5000)
    shop.pay(order["id"])
    shop.client.post(
        "/api/shop/v1/orders/CASH-1/events",
        headers=shop.shop_headers,
        json={"type": "received", "occurred_at": utcnow().isoformat()},
    )
    assert settle_due(now=utcnow() + timedelta(days=8)) == 1
    withdrawal = db_session.scalars(select(Withdrawal)).one()
    assert withdrawal.amount.fen == 500 and withdrawal.payout_id is not None
    process_payout(withdrawal.payout_id)
    payout = db_session.get(Payout, withdrawal.payout_id)
    assert payout is not None
    db_session.refresh(payout)
    bills = shop.sandbox.get(f"/payouts?mchid={shop.merchant.mchid}")["payouts"]
    # WeChat holds one transfer bill for the rebate, waiting for the user to confirm it in the app.
    assert [(b["rail"], b["amount_fen"], b["status"], b["openid"]) for b in bills] == [
        ("transfer_bill", 500, "WAIT_USER_CONFIRM", shop.openid)
    ]
    assert payout.status.value == "accepted"
    wallet = shop.client.get("/api/mp/v1/wallet", headers=shop.consumer_headers).json
    assert wallet["available_fen"] == 0
    _ledger_clean()
