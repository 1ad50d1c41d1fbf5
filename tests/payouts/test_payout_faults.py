"""WeChat's dangerous answers: every payout is paid at most once, under its one bill number, and an
unknown outcome is resolved by query or a same-number resend — never by a new number."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from app.core.db import utcnow
from app.extensions import db
from app.merchants.models import PayoutRail
from app.payouts.models import PayoutStatus
from app.payouts.service import claim_payout, enqueue_due_payouts
from app.reviews.models import ReviewItem
from jobs.payouts import process_payout
from tests.payouts.conftest import Payee, ledger_clean

RAILS = {
    PayoutRail.TRANSFER_BILL: ("v3.transfer_bill", "SYSTEM_ERROR", "v3.transfer_bill_query"),
    PayoutRail.CASH_RED_PACKET: ("v2.sendredpack", "SYSTEMERROR", "v2.gethbinfo"),
}


def _finish(payee: Payee, bill_no: str, rail: PayoutRail) -> None:
    if rail is PayoutRail.TRANSFER_BILL:
        payee.shop.sandbox.post(f"/transfer-bills/{bill_no}/confirm")
    else:
        payee.shop.sandbox.post(f"/redpacks/{bill_no}/open")


def _one_paid(payee: Payee, bill_no: str, fen: int) -> None:
    """WeChat holds exactly one payout, under our one number, and paid at most that one."""
    rows = payee.sandbox_payouts()
    assert [(r["key"], r["amount_fen"]) for r in rows] == [(bill_no, fen)]
    assert [r["key"] for r in rows if r["paid"]] in ([], [bill_no])


@pytest.mark.parametrize("rail", list(RAILS))
def test_accept_then_error_resolved_with_the_same_number(payee: Payee, rail: PayoutRail) -> None:
    payee.use_rail(rail)
    api, code, _ = RAILS[rail]
    payee.fault(api=api, mode="accept_then_error", code=code, count=1)
    created = payee.withdraw(1200, "ate")
    payout = payee.payout_of(created.json["id"])
    assert payee.run(payout) == "unknown"
    assert payout.bill_no is not None and payout.submit_calls == 1 and payout.query_calls == 0
    # WeChat did pay: the next pass finds it by query under the same number.
    assert payee.run(payout) == "accepted"
    _finish(payee, payout.bill_no, rail)
    assert payee.run(payout) == "succeeded"
    _one_paid(payee, payout.bill_no, 1200)
    assert [r["key"] for r in payee.sandbox_payouts() if r["received"]] == [payout.bill_no]
    assert payout.bill_no == f"HLP{payout.id:010d}"
    ledger_clean()


@pytest.mark.parametrize("rail", list(RAILS))
@pytest.mark.parametrize("mode", ["timeout", "malformed"])
@pytest.mark.parametrize("after_commit", [True, False])
def test_timeout_and_malformed_replies_are_unknown_until_resolved(
    payee: Payee, rail: PayoutRail, mode: str, after_commit: bool
) -> None:
    payee.use_rail(rail)
    api, _, _ = RAILS[rail]
    payee.fault(api=api, mode=mode, count=1, after_commit=after_commit)
    created = payee.withdraw(1300, f"{mode}-{after_commit}")
    payout = payee.payout_of(created.json["id"])
    assert payee.run(payout) == "unknown"
    assert payee.wallet()["withdrawing_fen"] == 0  # in flight, not back: the outcome is unknown
    assert payee.run(payout) == "accepted"  # found by query, or resent under the same number
    _finish(payee, payout.bill_no or "", rail)
    assert payee.run(payout) == "succeeded"
    _one_paid(payee, payout.bill_no or "", 1300)
    ledger_clean()


@pytest.mark.parametrize("rail", list(RAILS))
def test_unknown_error_code_is_never_a_failure(payee: Payee, rail: PayoutRail) -> None:
    payee.use_rail(rail)
    api, _, query_api = RAILS[rail]
    payee.fault(api=api, mode="accept_then_error", code="SOMETHING_NEW", count=1)
    payee.fault(api=query_api, mode="error", code="SOMETHING_NEW", count=1)
    created = payee.withdraw(1100, "new-code")
    payout = payee.payout_of(created.json["id"])
    assert payee.run(payout) == "unknown"
    assert payee.run(payout) == "unknown"  # the query failed too: still unknown, nothing resent
    assert payee.run(payout) == "accepted"
    _one_paid(payee, payout.bill_no or "", 1100)
    ledger_clean()


@pytest.mark.parametrize("rail", list(RAILS))
def test_notenough_waits_for_top_up_and_flags_review(payee: Payee, rail: PayoutRail) -> None:
    payee.use_rail(rail)
    world = payee.shop.sandbox.world
    balance = world.state.merchants[payee.mchid].balance_fen
    world.state.merchants[payee.mchid].balance_fen = 0
    created = payee.withdraw(1400, "notenough")
    payout = payee.payout_of(created.json["id"])
    assert payee.run(payout) == "submitting"
    assert payout.next_attempt_at - utcnow() > timedelta(minutes=5)
    assert payee.sandbox_payouts() == []
    flags = db.session.scalars(select(ReviewItem).where(ReviewItem.kind == "payout_notenough")).all()
    assert len(flags) == 1
    assert payee.run(payout) == "submitting"  # still empty: one review item, no payout
    assert len(db.session.scalars(select(ReviewItem).where(ReviewItem.kind == "payout_notenough")).all()) == 1

    payee.shop.sandbox.post(f"/merchants/{payee.mchid}/topup", {"amount_fen": balance})
    assert payee.run(payout) == "accepted"
    assert payout.bill_no == f"HLP{payout.id:010d}"
    _one_paid(payee, payout.bill_no, 1400)
    ledger_clean()


def test_freq_limit_retried_later_with_backoff(payee: Payee) -> None:
    payee.use_rail(PayoutRail.CASH_RED_PACKET)
    payee.fault(api="v2.sendredpack", mode="error", code="FREQ_LIMIT", count=2)
    created = payee.withdraw(1000, "freq")
    payout = payee.payout_of(created.json["id"])
    assert payee.run(payout) == "submitting"
    first_delay = payout.next_attempt_at - utcnow()
    assert timedelta(seconds=5) < first_delay <= timedelta(seconds=15)
    assert payee.run(payout) == "submitting"
    assert payee.run(payout) == "accepted"
    _one_paid(payee, payout.bill_no or "", 1000)
    ledger_clean()


def test_final_rejection_returns_the_money(payee: Payee) -> None:
    payee.use_rail(PayoutRail.CASH_RED_PACKET)
    payee.fault(api="v2.sendredpack", mode="error", code="NO_AUTH", count=1)
    created = payee.withdraw(1000, "no-auth")
    payout = payee.payout_of(created.json["id"])
    assert payee.run(payout) == "failed"
    assert payout.failure_code == "NO_AUTH"
    assert payee.withdrawal(created.json["id"])["status"] == "returned"
    assert payee.wallet()["available_fen"] == 300_00
    assert payee.sandbox_payouts() == []
    ledger_clean()


def test_a_held_lease_keeps_a_second_pass_out(payee: Payee) -> None:
    created = payee.withdraw(1000, "lease")
    payout = payee.payout_of(created.json["id"])
    # An orphaned work horse holds the lease (it claimed, then lost contact).
    token = claim_payout(payout.id)
    db.session.commit()
    assert token is not None
    assert process_payout(payout.id) == "skipped"
    assert enqueue_due_payouts() == 0
    assert payee.sandbox_payouts() == []
    # Once the lease has run out, the sweep and a pass take over; the orphan's late outcome is not applied.
    payout.claimed_until = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert enqueue_due_payouts() == 1
    assert process_payout(payout.id) == "accepted"
    from app.payouts.rails import Outcome
    from app.payouts.service import record_outcome

    record_outcome(payout.id, token, Outcome("failed", state="FAIL"))
    db.session.commit()
    db.session.refresh(payout)
    assert payout.status is PayoutStatus.ACCEPTED
    _one_paid(payee, payout.bill_no or "", 1000)
    ledger_clean()


def test_pass_that_died_mid_call_is_resolved_by_query(payee: Payee) -> None:
    """A worker killed after WeChat accepted but before the result was stored leaves SUBMITTING."""
    from app.payouts import service

    created = payee.withdraw(1000, "died")
    payout = payee.payout_of(created.json["id"])
    step = service.start_pass(payout.id)
    db.session.commit()
    assert step is not None
    service.run_pass(step)  # WeChat accepted; the horse dies before recording
    payout.claimed_until = utcnow() - timedelta(seconds=1)  # its lease runs out
    db.session.commit()
    assert payee.run(payout) == "accepted"
    assert payout.submit_calls == 0 and payout.query_calls == 1  # the dead pass's call was never recorded
    _one_paid(payee, payout.bill_no or "", 1000)
    ledger_clean()


def test_new_number_only_after_a_query_proves_the_old_one_failed(payee: Payee) -> None:
    payee.use_rail(PayoutRail.CASH_RED_PACKET)
    payee.fault(api="v2.sendredpack", mode="accept_then_error", code="SYSTEMERROR", count=1)
    created = payee.withdraw(1000, "renumber")
    payout = payee.payout_of(created.json["id"])
    first = payout.bill_no or ""
    assert payee.run(payout) == "unknown"
    # WeChat's record of the first number ends FAILED (发放失败, §5.5): only now is a new number safe.
    world = payee.shop.sandbox.world
    world.state.redpacks[(payee.mchid, first)].status = "FAILED"
    assert payee.run(payout) == "submitting"
    assert payout.bill_no == f"{first}N2" and payout.attempt == 2
    assert payee.wallet()["withdrawing_fen"] == 0  # still in flight, not returned
    assert payee.run(payout) == "accepted"
    payee.shop.sandbox.post(f"/redpacks/{payout.bill_no}/open")
    assert payee.run(payout) == "succeeded"
    rows = {r["key"]: r for r in payee.sandbox_payouts()}
    assert set(rows) == {first, f"{first}N2"}
    assert [k for k, r in rows.items() if r["received"]] == [f"{first}N2"]
    renumbered = [h for h in payout.history if h["event"] == "renumbered"]
    assert renumbered and renumbered[0]["old_bill_no"] == first
    ledger_clean()


def test_unopened_refund_is_never_renumbered(payee: Payee) -> None:
    payee.use_rail(PayoutRail.CASH_RED_PACKET)
    created = payee.withdraw(1000, "no-renumber")
    payout = payee.payout_of(created.json["id"])
    payee.run(payout)
    payee.shop.sandbox.post(f"/redpacks/{payout.bill_no}/ignore")
    assert payee.run(payout) == "failed"
    assert payout.attempt == 1
    assert len(payee.sandbox_payouts()) == 1
    ledger_clean()


def test_missing_client_certificate_waits_and_is_flagged(payee: Payee) -> None:
    from app.merchants.credentials import seal_secrets
    from app.merchants.service import merchant_secrets

    merchant = payee.shop.merchant
    payee.use_rail(PayoutRail.CASH_RED_PACKET)
    secrets = merchant_secrets(merchant)
    merchant.sealed_credentials = seal_secrets(merchant.id, secrets.merged({"client_cert_pem": ""}))
    db.session.commit()
    created = payee.withdraw(1000, "no-cert")
    payout = payee.payout_of(created.json["id"])
    assert payee.run(payout) == "submitting"
    assert payee.sandbox_payouts() == []
    flags = db.session.scalars(select(ReviewItem).where(ReviewItem.kind == "payout_unconfigured")).all()
    assert len(flags) == 1
    merchant.sealed_credentials = seal_secrets(merchant.id, secrets)
    db.session.commit()
    assert payee.run(payout) == "accepted"
    ledger_clean()
