"""Cash red packets are a product only some accounts have: WeChat's refusal of a ``sendredpack`` for want
of it switches the product off for the merchant, and the merchant's next withdrawals go by transfer bill
(商家转账) instead of failing the same way."""

from __future__ import annotations

import pytest

from app.merchants.models import PayoutRail
from app.payouts.capabilities import cash_red_packets_off
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
