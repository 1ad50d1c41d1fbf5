"""Per-user caps count what a buyer was really granted by the campaign today, this week and this month
(read from the stored grants, one statement for the three windows)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.rebates.models import RebateGrant
from tests.campaign_setup import start_campaign
from tests.payments.conftest import Shop

RATIO = {"id": "ten", "kind": "ratio", "priority": 5, "stacking": "combinable", "rate_bp": 1000}


def _buyer_grants(db_session: Session, campaign: int) -> list[int]:
    return [
        grant.amount.fen
        for grant in db_session.scalars(
            select(RebateGrant)
            .where(RebateGrant.campaign_id == campaign, RebateGrant.beneficiary == "buyer")
            .order_by(RebateGrant.id)
        )
    ]


def _pay(shop: Shop, out_order_no: str, total_fen: int) -> None:
    order = shop.register(out_order_no, total_fen)
    shop.pay(order["id"])


def test_the_daily_cap_counts_todays_grants(
    shop: Shop, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    rules: dict[str, Any] = {"rules": [RATIO], "caps": {"per_user_day_fen": 1500}}
    campaign = start_campaign(shop, app, client, rules)

    for number in range(3):
        _pay(shop, f"CAP-D{number}", 10000)

    # 10% of ¥100 is ¥10 each time; the day allows ¥15 in all.
    assert _buyer_grants(db_session, campaign) == [1000, 500]


def test_the_tightest_of_the_day_week_and_month_caps_binds(
    shop: Shop, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    rules: dict[str, Any] = {
        "rules": [RATIO],
        "caps": {"per_user_day_fen": 5000, "per_user_week_fen": 2500, "per_user_month_fen": 9000},
    }
    campaign = start_campaign(shop, app, client, rules)

    for number in range(4):
        _pay(shop, f"CAP-W{number}", 10000)

    assert _buyer_grants(db_session, campaign) == [1000, 1000, 500]
