"""Cash red packets are a product only some accounts have: WeChat's refusal of a ``sendredpack`` for want
of it switches the product off for the merchant, and the merchant's next withdrawals go by transfer bill
(商家转账) instead of failing the same way."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEntry
from app.auth.principals import Role
from app.core.db import utcnow
from app.core.refusals import STANDS
from app.merchants.models import PayoutRail
from app.payouts.capabilities import cash_red_packets_off
from tests.console_client import Console
from tests.factories import make_staff
from tests.payouts.conftest import Payee, ledger_clean


@pytest.mark.parametrize("code", ["NO_AUTH", "PRODUCT_AUTHORITY_UNOPEN"])
def test_a_refused_red_packet_switches_the_product_off_and_later_withdrawals_go_by_transfer_bill(
    payee: Payee, code: str
) -> None:
    payee.use_rail(PayoutRail.CASH_RED_PACKET)
    payee.shop.sandbox.post(f"/merchants/{payee.mchid}/cash-red-packets", {"enabled": False, "code": code})
    refused = payee.withdraw(1000, "first")
    payout = payee.payout_of(refused.json["id"])
    assert payout.rail is PayoutRail.CASH_RED_PACKET
    assert payee.run(payout) == "failed"
    assert payout.failure_code == code and "cannot send cash red packets" in (payout.failure_reason or "")
    assert payee.withdrawal(refused.json["id"])["status"] == "returned"
    assert cash_red_packets_off(payee.shop.merchant.id)

    again = payee.withdraw(1000, "second")
    second = payee.payout_of(again.json["id"])
    assert second.rail is PayoutRail.TRANSFER_BILL
    assert payee.run(second) == "accepted"
    paid = payee.sandbox_payouts()
    assert [(p["rail"], p["key"]) for p in paid] == [("transfer_bill", second.bill_no)]
    ledger_clean()


def test_another_final_refusal_leaves_the_product_on(payee: Payee) -> None:
    payee.use_rail(PayoutRail.CASH_RED_PACKET)
    payee.fault(api="v2.sendredpack", mode="error", code="OPENID_ERROR", count=1)
    refused = payee.withdraw(1000, "openid")
    assert payee.run(payee.payout_of(refused.json["id"])) == "failed"
    assert not cash_red_packets_off(payee.shop.merchant.id)
    again = payee.withdraw(1000, "again")
    assert payee.payout_of(again.json["id"]).rail is PayoutRail.CASH_RED_PACKET
    ledger_clean()


def test_once_the_merchant_opens_red_packets_finance_asks_wechat_again(
    payee: Payee, db_session: Session
) -> None:
    merchant = payee.shop.merchant
    payee.use_rail(PayoutRail.CASH_RED_PACKET)
    payee.shop.sandbox.post(
        f"/merchants/{payee.mchid}/cash-red-packets", {"enabled": False, "code": "NO_AUTH"}
    )
    refused = payee.payout_of(payee.withdraw(1000, "first").json["id"])
    assert payee.run(refused) == "failed"
    assert cash_red_packets_off(merchant.id)
    # A refusal stands a week; then the next send asks WeChat again by itself.
    assert cash_red_packets_off(merchant.id, now=utcnow() + STANDS - timedelta(minutes=1))
    assert not cash_red_packets_off(merchant.id, now=utcnow() + STANDS + timedelta(minutes=1))

    path = "/api/console/v1/payouts/capabilities/cash_red_packet/ask-again"
    viewer = Console(payee.client, merchant.slug).login(make_staff(merchant=merchant, role=Role.VIEWER).email)
    assert viewer.post(path).status_code == 403
    assert cash_red_packets_off(merchant.id)
    finance = Console(payee.client, merchant.slug).login(
        make_staff(merchant=merchant, role=Role.FINANCE).email
    )
    asked = finance.post(path)
    assert asked.status_code == 200, asked.json
    assert {c["product"]: c["enabled"] for c in asked.json}["cash_red_packet"] is None
    assert not cash_red_packets_off(merchant.id)
    audit = db_session.scalars(
        select(AuditEntry).where(AuditEntry.action == "payouts.capability.ask_again")
    ).one()
    assert audit.merchant_id == merchant.id and (audit.before or {})["wechat_code"] == "NO_AUTH"
    unknown = finance.post("/api/console/v1/payouts/capabilities/bogus/ask-again")
    assert (unknown.status_code, unknown.json["error"]["code"]) == (404, "not_found")
    again = finance.post(path)  # nothing refused any more: nothing to ask
    assert (again.status_code, again.json["error"]["code"]) == (409, "capability_not_off")

    # The merchant opened the product at WeChat Pay: the next withdrawal is a cash red packet again.
    payee.shop.sandbox.post(f"/merchants/{payee.mchid}/cash-red-packets", {"enabled": True})
    second = payee.payout_of(payee.withdraw(1000, "second").json["id"])
    assert second.rail is PayoutRail.CASH_RED_PACKET
    assert payee.run(second) == "accepted"
    assert [p["rail"] for p in payee.sandbox_payouts()] == ["redpack"]  # the refused one sent nothing
    ledger_clean()
