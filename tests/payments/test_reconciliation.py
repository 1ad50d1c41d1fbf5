"""`flask reconcile trades --date D` against the sandbox's trade bill (§8)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.db import utcnow
from app.payments.models import Refund
from app.reviews.models import ReviewItem
from jobs.payments import submit_refund
from tests.payments.conftest import Shop


def _china_today() -> date:
    return (utcnow() + timedelta(hours=8)).date()


def _reconcile(app: Flask, day: date | str) -> Result:
    day = day if isinstance(day, str) else day.isoformat()
    return app.test_cli_runner().invoke(args=["reconcile", "trades", "--date", day])


@pytest.fixture
def trading_day(shop: Shop, db_session: Session) -> dict[str, str]:
    """Two orders paid and one partially refunded today; then WeChat's day ends and its bill exists."""
    numbers = {}
    for out_order_no, total in (("SO-B1", 3000), ("SO-B2", 4500)):
        order = shop.register(out_order_no, total)
        shop.pay(order["id"])
        numbers[out_order_no] = shop.out_trade_no(order["id"])
    assert shop.refund("SO-B1", "RF-B1", 1000).status_code == 202
    refund = db_session.scalars(select(Refund).where(Refund.out_refund_no == "RF-B1")).one()
    submit_refund(refund.id)
    shop.sandbox.post(
        f"/refunds/{refund.wechat_refund_no}/resolve", {"mchid": shop.merchant.mchid, "status": "SUCCESS"}
    )
    paid = shop.order("SO-B1")
    assert paid["refunded_fen"] == 1000
    # The bill day is the China date of the payments (not of "now": a run may straddle midnight there).
    numbers["day"] = (datetime.fromisoformat(paid["paid_at"]) + timedelta(hours=8)).date().isoformat()
    # WeChat issues a day's bill only once the day is over (NO_STATEMENT_EXIST before).
    shop.sandbox.post("/clock/advance", {"seconds": 86400})
    return numbers


def test_matching_bill_is_clean(
    shop: Shop, app: Flask, db_session: Session, trading_day: dict[str, str]
) -> None:
    result = _reconcile(app, trading_day["day"])

    assert result.exit_code == 0, result.output
    assert (
        f"{shop.merchant.slug} {trading_day['day']}: 2 payment(s), 1 refund(s) checked — clean"
        in result.output
    )
    assert db_session.scalars(select(ReviewItem)).all() == []


def test_each_difference_is_reported_and_flagged(
    shop: Shop, app: Flask, db_session: Session, trading_day: dict[str, str]
) -> None:
    day = trading_day["day"]
    mismatch = {"mchid": shop.merchant.mchid, "bill_date": day}
    shop.sandbox.post(
        "/bills/mismatch",
        mismatch | {"kind": "amount", "out_trade_no": trading_day["SO-B1"], "amount_fen": 2990},
    )
    shop.sandbox.post("/bills/mismatch", mismatch | {"kind": "missing", "out_trade_no": trading_day["SO-B2"]})
    shop.sandbox.post(
        "/bills/mismatch", mismatch | {"kind": "extra", "out_trade_no": "PHANTOM0001", "amount_fen": 999}
    )

    result = _reconcile(app, day)

    assert result.exit_code == 1, result.output
    assert "3 difference(s)" in result.output
    lines = [line.split() for line in result.output.splitlines() if line.startswith("  ")]
    assert sorted((cells[0], cells[1], cells[2], cells[3], cells[4]) for cells in lines) == sorted(
        [
            ("amount_mismatch", "payment", trading_day["SO-B1"], "wechat=2990", "hongli=3000"),
            ("missing_in_wechat", "payment", trading_day["SO-B2"], "wechat=None", "hongli=4500"),
            ("missing_in_hongli", "payment", "PHANTOM0001", "wechat=999", "hongli=None"),
        ]
    )
    flagged = db_session.scalars(select(ReviewItem).where(ReviewItem.kind == "reconciliation")).all()
    assert sorted(item.reference or "" for item in flagged) == sorted(
        [
            f"{day}:payment:{trading_day['SO-B1']}",
            f"{day}:payment:{trading_day['SO-B2']}",
            f"{day}:payment:PHANTOM0001",
        ]
    )
    # Running it again reports the same differences without piling up review items.
    assert _reconcile(app, day).exit_code == 1
    assert len(db_session.scalars(select(ReviewItem).where(ReviewItem.kind == "reconciliation")).all()) == 3


def test_a_day_without_trades_is_clean(shop: Shop, app: Flask, db_session: Session) -> None:
    result = _reconcile(app, _china_today() - timedelta(days=3))
    assert result.exit_code == 0, result.output
    assert "0 payment(s), 0 refund(s) checked — clean" in result.output
