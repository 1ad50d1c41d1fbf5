"""The payout checks of ``flask ledger check``, ``payouts check`` and ``reconcile payouts`` against the sandbox:
clean after real payouts; failing on the damage of issue #18 — one withdrawal paid twice (the second payout
funded by the consumer's other withdrawal), a payout its withdrawal does not explain, a state without its
ledger step, and a payout failing the same way pass after pass."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import inspect, text, update

from app.core.db import utcnow
from app.core.money import Money
from app.extensions import db
from app.ledger.accounts import consumer_accounts, platform_account
from app.ledger.checks import registered_checks, unregister_check
from app.ledger.models import AccountKind, EntryReason
from app.ledger.service import post_entry
from app.limits import checks as limit_checks
from app.payments.reconciliation import CHINA
from app.payouts import checks as payout_checks
from app.payouts.models import Payout, PayoutStatus
from app.payouts.reconciliation import PaidBill, unexplained_paid_bills
from app.payouts.service import create_payout
from app.withdrawals.models import Withdrawal, WithdrawalStatus
from tests.payouts.conftest import Payee

PAYOUT_CHECKS = (
    "payouts.withdrawal_paid_at_most_once",
    "payouts.withdrawal_and_payout_agree",
    "payouts.ledger_follows_status",
)


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    """The checks as ``create_app`` registers them (registered here too, removed only if added here)."""
    names = (*PAYOUT_CHECKS, "limits.counters_match_rows")
    added = [name for name in names if name not in registered_checks()]
    payout_checks.register()
    limit_checks.register()
    yield
    for name in added:
        unregister_check(name)


def _payout_violations() -> list[str]:
    return [
        *payout_checks.withdrawal_paid_at_most_once(),
        *payout_checks.withdrawal_and_payout_agree(),
        *payout_checks.payout_ledger_follows_status(),
    ]


def _cli(payee: Payee, *args: str) -> tuple[int, list[str]]:
    result = payee.shop.client.application.test_cli_runner().invoke(args=list(args))
    return result.exit_code, result.output.splitlines()


def _reconcile(payee: Payee) -> tuple[int, list[str]]:
    today = dt.datetime.now(CHINA).date().isoformat()
    return _cli(payee, "reconcile", "payouts", "--date", today, "--merchant", payee.shop.merchant.slug)


def _withdrawal(withdrawal_id: int) -> Withdrawal:
    withdrawal = db.session.get(Withdrawal, withdrawal_id, populate_existing=True)
    assert withdrawal is not None
    return withdrawal


def _paid(payee: Payee, payout: Payout) -> None:
    assert payee.run(payout) == "accepted"
    payee.shop.sandbox.post(f"/transfer-bills/{payout.bill_no}/confirm")
    assert payee.run(payout) == "succeeded"


def _allow_payouts_per_withdrawal() -> None:
    """Drop the one-payout-per-withdrawal constraint (rolled back with the test): the schema before it,
    where concurrent approvals created several payouts for one withdrawal."""
    connection = db.session.connection()
    for constraint in inspect(connection).get_unique_constraints("payouts"):
        if constraint["column_names"] == ["source_type", "source_id"]:
            db.session.execute(text(f'ALTER TABLE payouts DROP CONSTRAINT "{constraint["name"]}"'))
    for index in inspect(connection).get_indexes("payouts"):
        if index["unique"] and index["column_names"] == ["source_type", "source_id"]:
            db.session.execute(text(f'DROP INDEX "{index["name"]}"'))


def _second_payout(payee: Payee, withdrawal: Withdrawal) -> Payout:
    """Another payout for ``withdrawal``, as a concurrent approval created it."""
    payout = create_payout(
        merchant=payee.shop.merchant,
        consumer_id=withdrawal.consumer_id,
        source_type="withdrawal",
        source_id=withdrawal.id,
        amount=withdrawal.net,
        fee=withdrawal.fee,
    )
    db.session.commit()
    return payout


# ---------------------------------------------------------------- clean


def test_real_payouts_pass_every_check(payee: Payee) -> None:
    paid = payee.payout_of(payee.withdraw(1000, "paid").json["id"])
    _paid(payee, paid)
    payee.fault(api="v3.transfer_bill", mode="error", code="NO_AUTH", count=1)
    refused = payee.payout_of(payee.withdraw(1200, "refused").json["id"])
    assert payee.run(refused) == "failed"
    accepted = payee.payout_of(payee.withdraw(1300, "accepted").json["id"])
    assert payee.run(accepted) == "accepted"
    payee.payout_of(payee.withdraw(1400, "created").json["id"])  # not run: still created
    assert payee.withdraw(6000, "review").status_code == 201  # above auto-approval: waits for review

    assert _payout_violations() == []
    code, lines = _cli(payee, "ledger", "check")
    assert code == 0, lines
    code, lines = _cli(payee, "payouts", "check")
    assert code == 0, lines
    assert _reconcile(payee)[0] == 0


# ---------------------------------------------------------------- one withdrawal paid twice


def test_a_withdrawal_paid_twice_fails_ledger_check_and_reconciliation(payee: Payee) -> None:
    _allow_payouts_per_withdrawal()
    created = payee.withdraw(2100, "twice")
    first = payee.payout_of(created.json["id"])
    # The consumer's other withdrawal, waiting for review, holds the money the second payout takes.
    assert payee.withdraw(6000, "waiting").status_code == 201
    withdrawal = _withdrawal(created.json["id"])
    second = _second_payout(payee, withdrawal)
    _paid(payee, first)
    _paid(payee, second)
    assert sorted(b["key"] for b in payee.sandbox_payouts()) == sorted([first.bill_no, second.bill_no])

    code, lines = _cli(payee, "ledger", "check")

    assert code == 1
    assert (
        f"payouts.withdrawal_paid_at_most_once: withdrawal {withdrawal.id} of 2100 fen: 2 payouts carry "
        "4200 fen not failed, 2 succeeded"
    ) in lines
    assert (
        f"payouts.withdrawal_and_payout_agree: payout {second.id} (succeeded): withdrawal {withdrawal.id} "
        f"(approved) points at payout {first.id}"
    ) in lines
    assert lines[-1].startswith("ledger check FAILED")

    code, lines = _reconcile(payee)
    assert code == 1
    text_ = "\n".join(lines)
    assert f"paid_twice         withdrawal {withdrawal.id!s:<24} wechat=4200 hongli=2100" in text_
    assert f"unexplained_payout payout   {second.bill_no:<24} wechat=2100 hongli=None" in text_
    assert f"points at payout {first.id}" in text_
    assert f"unexplained_payout payout   {first.bill_no}" not in text_


def test_a_paid_payout_of_a_rejected_withdrawal_is_unexplained(payee: Payee) -> None:
    created = payee.withdraw(1000, "rejected-later")
    payout = payee.payout_of(created.json["id"])
    _paid(payee, payout)
    db.session.execute(
        update(Withdrawal).where(Withdrawal.id == created.json["id"]).values(status=WithdrawalStatus.REJECTED)
    )
    db.session.commit()

    code, lines = _reconcile(payee)

    assert code == 1
    assert any(
        line.strip().startswith(f"unexplained_payout payout   {payout.bill_no}")
        and f"withdrawal {created.json['id']}, which is rejected" in line
        for line in lines
    ), lines
    assert (
        f"withdrawal {created.json['id']} is rejected and points at payout {payout.id} (of withdrawal "
        f"{created.json['id']})" in payout_checks.withdrawal_and_payout_agree()
    )


def test_paid_bills_no_payout_of_ours_explains(payee: Payee) -> None:
    payout = payee.payout_of(payee.withdraw(1000, "ours").json["id"])
    stranger = f"HLP{payout.id + 1000:010d}"
    renumbered = f"{payout.bill_no}N2"  # a number this payout never used

    differences = unexplained_paid_bills(
        payee.shop.merchant,
        [PaidBill("SOMEONE-ELSES-1", 500), PaidBill(stranger, 700), PaidBill(renumbered, 1000)],
    )

    assert [(d.kind, d.key, d.wechat_fen, d.detail) for d in differences] == [
        ("unexplained_payout", renumbered, 1000, "no payout of ours has this bill number"),
        ("unexplained_payout", stranger, 700, "no payout of ours has this bill number"),
        ("unexplained_payout", "SOMEONE-ELSES-1", 500, "no payout of ours has this bill number"),
    ]
    # The payout's own number, its withdrawal pointing at it, is explained.
    assert unexplained_paid_bills(payee.shop.merchant, [PaidBill(payout.bill_no or "", 1000)]) == []


# ---------------------------------------------------------------- ledger steps follow the state


def test_a_state_without_its_ledger_step_fails(payee: Payee) -> None:
    payout = payee.payout_of(payee.withdraw(1000, "no-settle").json["id"])
    assert payee.run(payout) == "accepted"
    assert payout_checks.payout_ledger_follows_status() == []
    # Marked paid by hand: no settle entry follows.
    db.session.execute(update(Payout).where(Payout.id == payout.id).values(status=PayoutStatus.SUCCEEDED))

    assert payout_checks.payout_ledger_follows_status() == [
        f"payout {payout.id} is succeeded (1000 fen): its ledger holds submit 1000 fen"
    ]


def test_a_payout_amount_changed_after_submit_fails(payee: Payee) -> None:
    payout = payee.payout_of(payee.withdraw(1000, "changed").json["id"])
    assert payee.run(payout) == "accepted"
    db.session.execute(update(Payout).where(Payout.id == payout.id).values(amount=Money(900)))

    violations = payout_checks.payout_ledger_follows_status()

    assert violations == [f"payout {payout.id} is accepted (900 fen): its ledger holds submit 1000 fen"]


def test_an_entry_of_no_payout_fails(payee: Payee) -> None:
    merchant_id = payee.shop.merchant.id
    entry = post_entry(
        key="payout:987654321:submit",
        reason=EntryReason.PAYOUT_SUBMIT,
        cause_type="payout",
        cause_id="987654321",
        lines=[
            (consumer_accounts(merchant_id, payee.shop.consumer_id).available, Money(-100)),
            (platform_account(AccountKind.PAYOUTS_IN_FLIGHT, merchant_id), Money(100)),
        ],
        merchant_id=merchant_id,
    )
    assert entry is not None
    assert payout_checks.payout_ledger_follows_status() == [
        f"entry {entry.id} (payout:987654321:submit, payout_submit) is no step of an existing payout"
    ]


# ---------------------------------------------------------------- payouts check: the same failure, pass after pass


def test_the_same_failure_three_passes_running_fails_payouts_check(payee: Payee) -> None:
    payee.fault(api="v3.transfer_bill", mode="error", code="NOT_ENOUGH", count=3)
    payout = payee.payout_of(payee.withdraw(1000, "notenough").json["id"])
    assert payee.run(payout) == "submitting"
    assert payee.run(payout) == "submitting"
    assert _cli(payee, "payouts", "check")[0] == 0  # twice is not yet "pass after pass"
    assert payee.run(payout) == "submitting"

    code, lines = _cli(payee, "payouts", "check")

    assert code == 1
    assert f"{payout.id}\t{payout.bill_no}\tsubmitting\tsame failure on 3 passes running: NOT_ENOUGH" in lines
    assert _cli(payee, "payouts", "check", "--passes", "4")[0] == 0
    # Topped up (the fault is spent): the next pass goes through and the check is clean again.
    assert payee.run(payout) == "accepted"
    assert _cli(payee, "payouts", "check")[0] == 0


def test_a_pass_refused_by_the_ledger_is_recorded_and_flagged_when_it_repeats(payee: Payee) -> None:
    """Issue #18's orphan: a second payout of one withdrawal, its money already sent by the first. Its pass
    is refused by the ledger (Overdraft) before any WeChat call: the refusal is noted on the row, the claim
    released with a backoff, a review item opened — and three in a row fail `payouts check`."""
    _allow_payouts_per_withdrawal()
    created = payee.withdraw(1000, "orphan")
    first = payee.payout_of(created.json["id"])
    second = _second_payout(payee, _withdrawal(created.json["id"]))
    assert payee.run(first) == "accepted"
    sent_before = len(payee.sandbox_payouts())

    assert payee.run(second) == "refused"
    assert second.status is PayoutStatus.CREATED and second.claim_token is None
    assert second.next_attempt_at > utcnow()  # backed off
    refused = [h for h in second.history if h["event"] == "pass:refused"]
    assert [h["code"] for h in refused] == ["insufficient_funds"]
    assert _cli(payee, "payouts", "check")[0] == 0  # once is not yet "pass after pass"

    assert payee.run(second) == "refused"
    assert payee.run(second) == "refused"
    code, lines = _cli(payee, "payouts", "check")

    assert code == 1
    assert (
        f"{second.id}\t{second.bill_no}\tcreated\tsame failure on 3 passes running: insufficient_funds"
        in lines
    )
    assert len(payee.sandbox_payouts()) == sent_before  # WeChat never heard of the refused payout
    assert (
        f"payout {second.id} (created): withdrawal {created.json['id']} (approved) points at payout {first.id}"
        in (payout_checks.withdrawal_and_payout_agree())
    )
