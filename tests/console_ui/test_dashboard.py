"""The dashboard's figures are the ledger's, the API and the page show the same ones, each widget takes at
most two round trips, and a range holds only its own days."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.auth.principals import Role
from app.core.db import utcnow
from app.dashboard import service
from app.extensions import db
from app.ledger.accounts import campaign_accounts, consumer_accounts, merchant_accounts
from app.rebates.service import settle_due
from tests.campaign_setup import start_campaign
from tests.console_client import Console
from tests.console_ui.pages import Browser
from tests.factories import make_staff
from tests.payments.conftest import Shop, shop
from tests.rebates.test_two_way_end_to_end import TWO_WAY

__all__ = ["shop"]


@contextmanager
def statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    engine = db.session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _seed_scenario(shop: Shop, app: Flask, client: FlaskClient) -> int:
    campaign = start_campaign(shop, app, client, TWO_WAY, name="Seed")
    first = shop.register("D-1", 20000)
    shop.pay(first["id"])
    packet = shop.client.get("/api/mp/v1/red-packets", headers=shop.consumer_headers).json[0]
    second = shop.register("D-2", 5000)
    assert shop.pay_params(second["id"], red_packet_id=packet["id"]).status_code == 200
    shop.sandbox.post(f"/transactions/{shop.out_trade_no(second['id'])}/pay", {"mchid": shop.merchant.mchid})
    shop.client.post(
        "/api/shop/v1/orders/D-2/events",
        headers=shop.shop_headers,
        json={"type": "received", "occurred_at": utcnow().isoformat()},
    )
    assert settle_due(now=utcnow() + timedelta(days=8)) == 1
    return campaign


def test_the_dashboard_is_the_ledger(
    shop: Shop, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    campaign = _seed_scenario(shop, app, client)
    merchant_id = shop.merchant.id
    viewer = make_staff(merchant=shop.merchant, role=Role.VIEWER)
    api = Console(client, shop.merchant.slug).login(viewer.email)
    figures = api.get("/api/console/v1/dashboard").json
    budget = campaign_accounts(merchant_id, campaign)
    left = budget.budget.balance.fen + budget.reserved.balance.fen
    assert figures["rebate_cost_fen"] == 100000 - left == 1750
    assert figures["flows"]["totals"]["funded_fen"] == 100000
    assert figures["gmv_driven_fen"] == 5000
    assert figures["roi"] == "1.8571"
    assert figures["redemption_rate"] == "1.0000" and figures["claim_rate"] == "1.0000"
    assert figures["funnel"]["issued"] == figures["funnel"]["redeemed"] == 1
    assert figures["orders"] == {"orders": 2, "gmv_fen": 25000, "refunded_fen": 0}
    wallet = consumer_accounts(merchant_id, shop.consumer_id)
    balances = figures["balances"]
    assert balances["consumer_available_fen"] == wallet.available.balance.fen == 250
    assert balances["consumer_pending_fen"] == wallet.pending.balance.fen == 0
    assert balances["merchant_rebate_fen"] == merchant_accounts(merchant_id).rebate.balance.fen == 1500
    assert balances["campaign_budget_fen"] == budget.budget.balance.fen
    assert figures["budget_burn"]["left_fen"] == left
    assert sum(day["cost_fen"] for day in figures["flows"]["series"]) == 1750
    assert len(figures["flows"]["series"]) == 30

    # The page shows the API's figures (any role reads both).
    page = Browser(app.test_client())  # a browser of its own (the API client holds a session)
    assert page.login(viewer.email).status_code == 303
    html = page.get(f"/console/m/{shop.merchant.slug}/").text
    shown = dict(re.findall(r'data-figure="([a-z_]+)" data-fen="(-?\d+)"', html))
    assert int(shown["rebate_cost_fen"]) == figures["rebate_cost_fen"]
    assert int(shown["gmv_driven_fen"]) == figures["gmv_driven_fen"]
    for key in (
        "merchant_rebate_fen",
        "campaign_budget_fen",
        "consumer_available_fen",
        "consumer_pending_fen",
    ):
        assert int(shown[key]) == balances[key], key


def test_each_widget_takes_at_most_two_round_trips(
    shop: Shop, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    _seed_scenario(shop, app, client)
    span = service.date_range()
    for widget in (
        service.flows,
        service.packets_issued,
        service.packets_redeemed,
        service.orders_paid,
        service.top_promoters,
    ):
        with statements() as seen:
            widget(merchant_id=shop.merchant.id, span=span)
        assert len(seen) <= 2, (widget.__name__, seen)
    with statements() as seen:
        service.balances(merchant_id=shop.merchant.id)
    assert len(seen) == 1


def test_a_range_holds_only_its_days(
    shop: Shop, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    _seed_scenario(shop, app, client)
    today = service.china_today()
    before = service.dashboard(
        merchant_id=shop.merchant.id,
        span=service.date_range(today - timedelta(days=60), today - timedelta(days=1)),
    )
    assert (
        before["rebate_cost_fen"] == 0 and before["gmv_driven_fen"] == 0 and before["funnel"]["issued"] == 0
    )
    assert before["roi"] is None
    # Balances are now, whatever the range.
    assert before["balances"]["merchant_rebate_fen"] == 1500


def test_ranges_are_checked(shop: Shop, client: FlaskClient, db_session: Session) -> None:
    viewer = make_staff(merchant=shop.merchant, role=Role.VIEWER)
    api = Console(client, shop.merchant.slug).login(viewer.email)
    assert api.get("/api/console/v1/dashboard?from=2026-12-02&to=2026-12-01").status_code == 422
    assert api.get("/api/console/v1/dashboard?from=2024-01-01&to=2026-12-01").status_code == 422
    assert api.get("/api/console/v1/dashboard?from=2026-11-01&to=2026-11-30").json["range"]["days"] == 30


@pytest.mark.parametrize("days", [1, 366])
def test_date_range_bounds(days: int) -> None:
    today = service.china_today()
    span = service.date_range(today - timedelta(days=days - 1), today)
    assert len(span.days()) == days and span.until - span.since == timedelta(days=days)


def test_refunds_adjust_gmv_driven_cost_and_roi(
    shop: Shop, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    from sqlalchemy import select

    from app.payments.models import Refund
    from jobs.payments import submit_refund

    campaign = _seed_scenario(shop, app, client)
    assert shop.refund("D-2", "D-2-R1", 2000).status_code == 202  # half of the ¥40 paid
    row = db_session.scalars(select(Refund).where(Refund.out_refund_no == "D-2-R1")).one()
    submit_refund(row.id)
    shop.sandbox.post(
        f"/refunds/{row.wechat_refund_no}/resolve", {"mchid": shop.merchant.mchid, "status": "SUCCESS"}
    )
    figures = service.dashboard(merchant_id=shop.merchant.id, span=service.date_range())
    budget = campaign_accounts(shop.merchant.id, campaign)
    cost = 100000 - budget.budget.balance.fen - budget.reserved.balance.fen
    assert figures["rebate_cost_fen"] == cost < 1750  # clawed back pro rata
    assert figures["gmv_driven_fen"] == 5000 - 2000
    assert (
        figures["roi"]
        == f"{(3000 - cost) * 10000 // cost // 10000}.{(3000 - cost) * 10000 // cost % 10000:04d}"
    )
