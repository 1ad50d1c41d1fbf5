"""``flask --app wsgi reconcile payouts --date D``: every payout finished that China day, bill by bill
against WeChat's records (the sandbox), including injected differences."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from app.core.money import Money
from app.extensions import db
from app.merchants.models import PayoutRail
from app.payments.reconciliation import CHINA
from app.payouts.models import Payout, PayoutStatus
from app.reviews.models import ReviewItem
from tests.payouts.conftest import Payee


def _today() -> str:
    return dt.datetime.now(CHINA).date().isoformat()


def _reconcile(payee: Payee) -> tuple[int, str]:
    runner = payee.shop.client.application.test_cli_runner()
    result = runner.invoke(
        args=["reconcile", "payouts", "--date", _today(), "--merchant", payee.shop.merchant.slug]
    )
    return result.exit_code, result.output


def _paid_transfer(payee: Payee, fen: int, key: str) -> Payout:
    created = payee.withdraw(fen, key)
    payout = payee.payout_of(created.json["id"])
    assert payee.run(payout) == "accepted"
    payee.shop.sandbox.post(f"/transfer-bills/{payout.bill_no}/confirm")
    assert payee.run(payout) == "succeeded"
    return payout


def test_clean_day_then_injected_differences(payee: Payee) -> None:
    paid = _paid_transfer(payee, 1000, "paid")
    other = _paid_transfer(payee, 1100, "other")
    refused = payee.withdraw(1200, "refused")
    payee.fault(api="v3.transfer_bill", mode="error", code="NO_AUTH", count=1)
    failed = payee.payout_of(refused.json["id"])
    assert payee.run(failed) == "failed"
    assert _reconcile(payee) == (0, f"{payee.shop.merchant.slug} {_today()}: 3 payout(s) checked — clean\n")

    # Hongli says succeeded where WeChat refused (no bill at all), and an amount differs.
    db.session.execute(update(Payout).where(Payout.id == failed.id).values(status=PayoutStatus.SUCCEEDED))
    db.session.execute(update(Payout).where(Payout.id == other.id).values(amount=Money(1111)))
    db.session.commit()
    code, output = _reconcile(payee)
    assert code == 1, output
    assert "3 payout(s) checked — 2 difference(s)" in output
    assert f"missing_in_wechat  payout   {failed.bill_no}" in output
    assert f"amount_mismatch    payout   {other.bill_no:<24} wechat=1100 hongli=1111" in output
    assert paid.bill_no not in output
    items = db.session.scalars(select(ReviewItem).where(ReviewItem.kind == "reconciliation")).all()
    assert sorted(i.reference or "" for i in items) == sorted(
        [f"{_today()}:payout:{failed.bill_no}", f"{_today()}:payout:{other.bill_no}"]
    )


def test_paid_at_wechat_but_failed_here(payee: Payee) -> None:
    payee.use_rail(PayoutRail.CASH_RED_PACKET)
    created = payee.withdraw(1000, "opened")
    payout = payee.payout_of(created.json["id"])
    assert payee.run(payout) == "accepted"
    payee.shop.sandbox.post(f"/redpacks/{payout.bill_no}/open")
    assert payee.run(payout) == "succeeded"
    db.session.execute(
        update(Payout).where(Payout.id == payout.id).values(status=PayoutStatus.FAILED, failure_code="X")
    )
    db.session.commit()
    code, output = _reconcile(payee)
    assert code == 1
    assert f"missing_in_hongli  payout   {payout.bill_no:<24} wechat=1000 hongli=1000" in output
