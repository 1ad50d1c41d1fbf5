"""The funding payment is prepaid money, not a purchase: a campaign whose rule pays on every order pays
nothing on it, its GMV is not the merchant's, and a late payment of a closed funding order still funds."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.principals import Role
from app.ledger.accounts import campaign_accounts, prepaid_account
from app.orders.models import Order
from app.rebates.models import RebateGrant
from tests.campaign_setup import start_campaign
from tests.console_client import Console
from tests.factories import make_staff
from tests.payments.conftest import Shop
from tests.personal.conftest import TERMS, ledger_clean

EVERY_ORDER = {
    "rules": [
        {
            "id": "fixed",
            "kind": "fixed",
            "priority": 1,
            "stacking": "combinable",
            "amount_fen": 500,
            "min_order_fen": 0,
        }
    ]
}


def test_a_rule_firing_on_every_order_ignores_the_funding_payment(
    shop: Shop, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    campaign_id = start_campaign(shop, app, client, EVERY_ORDER, name="Every order")
    owner = make_staff(merchant=shop.merchant, role=Role.OWNER)
    console = Console(client, shop.merchant.slug).login(owner.email)
    put = client.put(
        f"/api/console/v1/campaigns/{campaign_id}/personal-terms", json=TERMS, headers=console.headers()
    )
    assert put.status_code == 200, put.json
    budget = campaign_accounts(shop.merchant.id, campaign_id).budget
    before = budget.balance.fen

    created = client.post(
        "/api/mp/v1/personal-packets",
        json={"campaign_id": campaign_id, "amount_fen": 2000},
        headers=shop.consumer_headers,
    )
    assert created.status_code == 201, created.json
    assert (created.json["payment"]["payable_fen"], created.json["payment"]["discount_fen"]) == (2000, 0)
    shop.sandbox.post(
        f"/transactions/{created.json['payment']['sandbox']['out_trade_no']}/pay",
        {"mchid": shop.merchant.mchid},
    )
    funding = db_session.scalars(
        select(Order).where(Order.out_order_no == f"personal:{created.json['packet']['id']}")
    ).one()
    assert db_session.scalars(select(RebateGrant).where(RebateGrant.order_id == funding.id)).all() == []
    assert budget.balance.fen == before
    assert prepaid_account(shop.merchant.id, shop.consumer_id).balance.fen == 2000

    # The same amount as a purchase earns the rule's ¥5: the rule does fire on orders.
    order = shop.register("SO-SAME", 2000)
    shop.pay(order["id"])
    grants = db_session.scalars(select(RebateGrant).where(RebateGrant.order_id == order["id"])).all()
    assert [(g.rule_id, g.amount.fen) for g in grants] == [("fixed", 500)]
    ledger_clean()

    # The dashboard counts the purchase, not the funding payment.
    widgets = console.get("/api/console/v1/dashboard")
    assert widgets.status_code == 200, widgets.json
    assert (widgets.json["orders"]["orders"], widgets.json["orders"]["gmv_fen"]) == (1, 2000)
