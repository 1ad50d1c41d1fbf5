"""The dashboard's coupon cost is the ledger's: a voucher used on a paid order (its cost and both two-way
legs, booked from its reservation) and then half refunded; counted once in the cost and the ROI, in two
round trips, and only in the range's days."""

from __future__ import annotations

import re
from datetime import timedelta

from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth.principals import Role
from app.coupons.costs import coupon_cost_fen
from app.dashboard import service
from app.ledger.accounts import campaign_accounts
from app.payments.models import Refund
from app.rebates.models import RebateGrant
from jobs.payments import submit_refund
from tests.console_ui.pages import Browser
from tests.console_ui.test_dashboard import statements
from tests.coupons.conftest import Marketing, ledger_clean, marketing, run_jobs, shop
from tests.factories import make_staff

__all__ = ["marketing", "shop"]


def _grants_net(db_session: Session) -> int:
    amount = func.sum(RebateGrant.amount) - func.sum(RebateGrant.reversed)
    return int(db_session.scalar(select(amount).where(RebateGrant.coupon_id.is_not(None))) or 0)


def _use_a_voucher(marketing: Marketing) -> None:
    shop = marketing.shop
    stock = marketing.stock()
    issued = marketing.console.post(
        f"/api/console/v1/coupon-stocks/{stock['id']}/coupons",
        json={"consumer_id": shop.consumer_id, "idempotency_key": "dash-1"},
    )
    assert issued.status_code == 201, issued.json
    assert run_jobs("jobs.coupons.send_coupon") == 1
    order = shop.register("DASH-V1", 5000)
    paid = shop.pay(order["id"])
    assert paid["promotion_detail"], paid  # the sandbox's checkout applied the voucher


def test_coupon_cost_is_the_ledgers_and_counted_once(
    marketing: Marketing, app: Flask, db_session: Session
) -> None:
    shop = marketing.shop
    merchant_id = shop.merchant.id
    _use_a_voucher(marketing)
    accounts = campaign_accounts(merchant_id, marketing.campaign_id)
    spent = 100000 - accounts.budget.balance.fen - accounts.reserved.balance.fen

    figures = marketing.console.get("/api/console/v1/dashboard").json
    assert figures["coupon_cost_fen"] == _grants_net(db_session) == 1000 + 500 + 250
    assert figures["rebate_cost_fen"] == 0  # the order was under the two-way trigger: no other rebate
    assert figures["cost_fen"] == figures["rebate_cost_fen"] + figures["coupon_cost_fen"] == spent
    assert figures["budget_burn"]["cost_fen"] == spent
    assert figures["funnel"]["cost_fen"] == spent

    # Half of the order refunded: the coupon's cost and both legs come back by half, on the refund's day.
    refund = shop.refund("DASH-V1", "DASH-V1-R", 2500)
    assert refund.status_code == 202, refund.json
    row = db_session.scalars(select(Refund).where(Refund.out_refund_no == "DASH-V1-R")).one()
    submit_refund(row.id)
    shop.sandbox.post(
        f"/refunds/{row.wechat_refund_no}/resolve", {"mchid": shop.merchant.mchid, "status": "SUCCESS"}
    )
    ledger_clean()
    figures = service.dashboard(merchant_id=merchant_id, span=service.date_range())
    spent = 100000 - accounts.budget.balance.fen - accounts.reserved.balance.fen
    assert figures["coupon_cost_fen"] == _grants_net(db_session) == 1750 // 2
    assert figures["cost_fen"] == spent == 875
    assert figures["rebate_cost_fen"] == 0

    # A range before today holds none of it.
    today = service.china_today()
    before = service.date_range(today - timedelta(days=10), today - timedelta(days=1))
    assert coupon_cost_fen(merchant_id=merchant_id, since=before.since, until=before.until) == 0

    # The page shows the API's figure (a viewer reads it).
    viewer = make_staff(merchant=shop.merchant, role=Role.VIEWER)
    page = Browser(app.test_client())
    assert page.login(viewer.email).status_code == 303
    html = page.get(f"/console/m/{shop.merchant.slug}/").text
    shown = dict(re.findall(r'data-figure="([a-z_]+)" data-fen="(-?\d+)"', html))
    assert int(shown["coupon_cost_fen"]) == 875


def test_the_coupon_cost_takes_at_most_two_round_trips(marketing: Marketing, db_session: Session) -> None:
    _use_a_voucher(marketing)
    span = service.date_range()
    merchant_id = marketing.shop.merchant.id
    assert coupon_cost_fen(merchant_id=merchant_id, since=span.since, until=span.until) == 1750  # warm
    with statements() as seen:
        found = coupon_cost_fen(merchant_id=merchant_id, since=span.since, until=span.until)
    assert found == 1750 and len(seen) <= 2, seen
