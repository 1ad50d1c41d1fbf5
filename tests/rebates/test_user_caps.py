"""Per-user caps count what a buyer was really granted by the campaign today, this week and this month
(read from the stored grants, one statement for the three windows)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.money import Money
from app.rebates.models import RebateGrant
from app.rebates.service import _user_facts
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


CHINA = timezone(timedelta(hours=8))


@pytest.mark.parametrize(
    ("now", "grants", "expected"),
    [
        # Tuesday 1 December: the week began on Monday 30 November, in the previous month.
        (
            datetime(2026, 12, 1, 10, tzinfo=CHINA),
            [
                (datetime(2026, 11, 29, 23, 59, 59, 999999, tzinfo=CHINA), 100),  # before every window
                (datetime(2026, 11, 30, 0, tzinfo=CHINA), 200),  # the week's first instant
                (datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=CHINA), 300),  # still only the week
                (datetime(2026, 12, 1, 0, tzinfo=CHINA), 400),  # day, week and month
                (datetime(2026, 12, 1, 9, 59, tzinfo=CHINA), 500),
            ],
            (900, 1400, 900),
        ),
        # Wednesday 16 December: the month began before the week.
        (
            datetime(2026, 12, 16, 10, tzinfo=CHINA),
            [
                (datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=CHINA), 100),
                (datetime(2026, 12, 1, 0, tzinfo=CHINA), 200),  # the month only
                (datetime(2026, 12, 13, 23, 59, 59, tzinfo=CHINA), 300),  # the Sunday before: month only
                (datetime(2026, 12, 14, 0, tzinfo=CHINA), 400),  # week and month
                (datetime(2026, 12, 16, 0, tzinfo=CHINA), 500),  # all three
            ],
            (500, 900, 1400),
        ),
    ],
)
def test_the_windows_start_at_midnight_monday_and_the_first_in_china(
    shop: Shop,
    app: Flask,
    client: FlaskClient,
    db_session: Session,
    now: datetime,
    grants: list[tuple[datetime, int]],
    expected: tuple[int, int, int],
) -> None:
    campaign = start_campaign(shop, app, client, {"rules": [RATIO]})
    _pay(shop, "CAP-X", 10000)  # a real grant, as the template for the ones placed around the boundaries
    template = db_session.scalars(select(RebateGrant).where(RebateGrant.campaign_id == campaign)).one()
    template.created_at = datetime(2020, 1, 1, tzinfo=CHINA)  # out of every window, whenever this runs
    for number, (created_at, fen) in enumerate(grants):
        for beneficiary in ("buyer", "inviter"):  # only the buyer's own grants count
            db_session.add(
                RebateGrant(
                    merchant_id=template.merchant_id,
                    campaign_id=campaign,
                    rule_version_id=template.rule_version_id,
                    rule_id=f"window-{number}",
                    order_id=template.order_id,
                    beneficiary=beneficiary,
                    consumer_id=template.consumer_id,
                    amount=Money(fen),
                    basis="test",
                    created_at=created_at,
                )
            )
    db_session.flush()

    facts = _user_facts(campaign, shop.consumer_id, now)

    assert (facts.granted_today.fen, facts.granted_this_week.fen, facts.granted_this_month.fen) == expected
