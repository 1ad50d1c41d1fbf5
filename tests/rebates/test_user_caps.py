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

from app.core.calendar import beijing_day_start
from app.core.db import utcnow
from app.core.money import Money
from app.limits.checks import counters_match_rows
from app.limits.models import LimitCounter
from app.limits.service import BUYER_DAY_FEN, BUYER_MONTH_FEN, BUYER_WEEK_FEN, take
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


def _counters(db_session: Session, campaign: int, consumer_id: int) -> dict[str, int]:
    return {
        counter.name: counter.used
        for counter in db_session.scalars(
            select(LimitCounter).where(
                LimitCounter.scope_id == campaign, LimitCounter.subject_id == consumer_id
            )
        )
    }


def test_every_buyer_grant_is_counted_in_the_campaigns_day_week_and_month_counters(
    shop: Shop, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    rules: dict[str, Any] = {"rules": [RATIO], "caps": {"per_user_day_fen": 1500}}
    campaign = start_campaign(shop, app, client, rules)

    for number in range(3):
        _pay(shop, f"CAP-C{number}", 10000)

    assert _buyer_grants(db_session, campaign) == [1000, 500]
    # Uncapped windows are counted too, so a cap added by a later rules version starts from the truth.
    assert _counters(db_session, campaign, shop.consumer_id) == {
        BUYER_DAY_FEN: 1500,
        BUYER_WEEK_FEN: 1500,
        BUYER_MONTH_FEN: 1500,
    }
    assert counters_match_rows() == []


def test_a_cap_taken_by_a_concurrent_booking_refuses_the_grant_and_keeps_nothing(
    shop: Shop, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    rules: dict[str, Any] = {"rules": [RATIO], "caps": {"per_user_day_fen": 1500}}
    campaign = start_campaign(shop, app, client, rules)
    # Another order of this buyer is being booked right now: its 1000 fen are in the day's counter, its
    # grant not yet visible. Reading the grants, the rules still see 1500 fen of room.
    assert take(
        merchant_id=shop.merchant.id,
        name=BUYER_DAY_FEN,
        scope_id=campaign,
        subject_id=shop.consumer_id,
        window_start=beijing_day_start(utcnow()),
        amount=1000,
        limit=1500,
    )
    db_session.commit()
    _, out_trade_no = shop.prepared("CAP-RACE", 10000)
    headers, body = shop.forger.signed(shop.forger.transaction(out_trade_no, 10000))

    answer = shop.notify(headers, body)

    # The counter refused the 1000 fen grant the rules allowed: the notification fails as a whole (its
    # transaction is rolled back; WeChat delivers it again and the rules then see the other grant).
    assert (answer.status_code, answer.json["error"]["code"]) == (409, "concurrent_change")
    assert _buyer_grants(db_session, campaign) == []
    # All or none: the week and month counters, which had room, hold nothing of it (rolled back with
    # the booking; a counter row that was never used is absent or zero).
    counters = _counters(db_session, campaign, shop.consumer_id)
    assert {name: used for name, used in counters.items() if used} == {BUYER_DAY_FEN: 1000}


def test_a_buyer_counter_that_disagrees_with_the_grants_fails_the_ledger_check(
    shop: Shop, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    campaign = start_campaign(shop, app, client, {"rules": [RATIO]})
    _pay(shop, "CAP-BAD", 10000)
    week = db_session.scalars(
        select(LimitCounter).where(LimitCounter.scope_id == campaign, LimitCounter.name == BUYER_WEEK_FEN)
    ).one()
    week.used = 900  # as if a grant had been counted short
    db_session.flush()

    violations = counters_match_rows()

    assert len(violations) == 1
    assert violations[0].startswith(f"counter {week.id} ({BUYER_WEEK_FEN}, merchant {shop.merchant.id}, ")
    assert violations[0].endswith("used 900, its 1 buyer grants sum to 1000")
