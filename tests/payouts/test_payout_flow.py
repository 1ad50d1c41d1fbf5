"""Withdrawals paid out through the sandbox on both rails: happy paths, review, returns to available."""

from __future__ import annotations

from flask.testing import FlaskClient

from app.auth.principals import Role
from app.merchants.models import PayoutRail
from app.payouts.models import PayoutStatus
from tests.console_client import Console
from tests.factories import make_staff
from tests.payouts.conftest import Payee, ledger_clean


def test_transfer_bill_confirmed_by_the_user(payee: Payee) -> None:
    created = payee.withdraw(1000, "w-1")
    assert created.status_code == 201, created.json
    assert created.json["status"] == "paying"
    wallet = payee.wallet()
    assert (wallet["available_fen"], wallet["withdrawing_fen"]) == (29000, 1000)

    payout = payee.payout_of(created.json["id"])
    assert payout.bill_no == f"HLP{payout.id:010d}"
    assert payee.run(payout) == "accepted"
    shown = payee.withdrawal(created.json["id"])
    assert shown["status"] == "awaiting_confirmation"
    assert shown["confirm"]["package_info"] and shown["confirm"]["mch_id"] == payee.mchid

    payee.shop.sandbox.post(f"/transfer-bills/{payout.bill_no}/confirm")
    assert payee.run(payout) == "succeeded"
    assert payee.withdrawal(created.json["id"])["status"] == "paid"
    wallet = payee.wallet()
    assert (wallet["available_fen"], wallet["withdrawing_fen"]) == (29000, 0)
    paid = [p for p in payee.sandbox_payouts() if p["paid"]]
    assert [(p["key"], p["amount_fen"]) for p in paid] == [(payout.bill_no, 1000)]
    ledger_clean()


def test_same_key_same_withdrawal(payee: Payee) -> None:
    first = payee.withdraw(1000, "same")
    again = payee.withdraw(1000, "same")
    assert first.status_code == again.status_code == 201
    assert first.json["id"] == again.json["id"]
    assert payee.wallet()["withdrawing_fen"] == 1000
    assert payee.withdraw(2000, "same").status_code == 409
    ledger_clean()


def test_policy_minimum_fee_and_daily_limit(payee: Payee) -> None:
    merchant = payee.shop.merchant
    merchant.withdrawal_fee_bp = 150  # 1.5 %, rounded down
    merchant.withdrawal_auto_approve_max = merchant.withdrawal_daily_limit
    assert payee.withdraw(merchant.withdrawal_min.fen - 1, "too-small").status_code == 422
    done = payee.withdraw(1999, "fee")
    assert done.status_code == 201
    assert (done.json["fee_fen"], done.json["net_fen"]) == (29, 1970)
    payout = payee.payout_of(done.json["id"])
    assert payout.amount.fen == 1970
    over = payee.withdraw(merchant.withdrawal_daily_limit.fen, "over-limit")
    assert over.status_code == 409
    ledger_clean()


def test_overdraft_refused(payee: Payee) -> None:
    response = payee.withdraw(300_01, "too-much")
    assert response.status_code == 409
    assert response.json["error"]["code"] == "insufficient_funds"
    assert payee.wallet()["available_fen"] == 300_00


def test_red_packet_opened(payee: Payee) -> None:
    payee.use_rail(PayoutRail.CASH_RED_PACKET)
    created = payee.withdraw(1500, "rp-1")
    payout = payee.payout_of(created.json["id"])
    assert payee.run(payout) == "accepted"
    payee.shop.sandbox.post(f"/redpacks/{payout.bill_no}/open")
    assert payee.run(payout) == "succeeded"
    assert payee.withdrawal(created.json["id"])["status"] == "paid"
    assert [p["key"] for p in payee.sandbox_payouts() if p["received"]] == [payout.bill_no]
    ledger_clean()


def test_unopened_red_packet_refunded_after_24h_returns_money(payee: Payee) -> None:
    payee.use_rail(PayoutRail.CASH_RED_PACKET)
    created = payee.withdraw(1500, "rp-2")
    payout = payee.payout_of(created.json["id"])
    assert payee.run(payout) == "accepted"
    payee.shop.sandbox.post("/clock/advance", {"seconds": 24 * 3600 + 120})
    assert payee.run(payout) == "failed"
    shown = payee.withdrawal(created.json["id"])
    assert shown["status"] == "returned"
    assert "not opened within 24 hours" in shown["reason"]
    wallet = payee.wallet()
    assert (wallet["available_fen"], wallet["withdrawing_fen"]) == (300_00, 0)
    assert [p["status"] for p in payee.sandbox_payouts()] == ["REFUND"]
    ledger_clean()


def test_transfer_rejected_by_the_user_returns_money(payee: Payee) -> None:
    created = payee.withdraw(1000, "rej")
    payout = payee.payout_of(created.json["id"])
    payee.run(payout)
    payee.shop.sandbox.post(f"/transfer-bills/{payout.bill_no}/reject")
    assert payee.run(payout) == "failed"
    assert payee.withdrawal(created.json["id"])["status"] == "returned"
    assert payee.wallet()["available_fen"] == 300_00
    ledger_clean()


def test_unconfirmed_transfer_cancelled_by_the_sweep(payee: Payee) -> None:
    from datetime import timedelta

    from app.extensions import db
    from app.payouts.service import confirm_timeout

    created = payee.withdraw(1000, "unconfirmed")
    payout = payee.payout_of(created.json["id"])
    payee.run(payout)
    assert payout.accepted_at is not None
    payout.accepted_at = payout.accepted_at - confirm_timeout() - timedelta(minutes=1)
    db.session.commit()
    assert payee.run(payout) == "accepted"  # cancel asked: CANCELING
    assert payout.wechat_state == "CANCELING"
    payee.shop.sandbox.post("/clock/advance", {"seconds": 5})
    assert payee.run(payout) == "failed"
    shown = payee.withdrawal(created.json["id"])
    assert shown["status"] == "returned" and "not confirmed in time" in shown["reason"]
    assert payee.wallet()["available_fen"] == 300_00
    ledger_clean()


def test_review_queue_approve_and_reject(payee: Payee, client: FlaskClient) -> None:
    merchant = payee.shop.merchant
    big = merchant.withdrawal_auto_approve_max.fen + 100
    finance = make_staff(merchant=merchant, role=Role.FINANCE)
    viewer = make_staff(merchant=merchant, role=Role.VIEWER)
    first = payee.withdraw(big, "big-1")
    second = payee.withdraw(big, "big-2")
    assert first.json["status"] == second.json["status"] == "pending_review"

    assert (
        Console(client, merchant.slug).login(viewer.email).get("/api/console/v1/withdrawals").status_code
        == 403
    )
    console = Console(client, merchant.slug).login(finance.email)
    queue = console.get("/api/console/v1/withdrawals?status=pending_review")
    assert queue.status_code == 200
    assert sorted(w["id"] for w in queue.json) == sorted([first.json["id"], second.json["id"]])

    approved = console.post(f"/api/console/v1/withdrawals/{first.json['id']}/approve")
    assert approved.status_code == 200, approved.json
    assert approved.json["status"] == "paying"
    rejected = console.post(
        f"/api/console/v1/withdrawals/{second.json['id']}/reject", json={"reason": "account under review"}
    )
    assert rejected.status_code == 200, rejected.json
    again = console.post(f"/api/console/v1/withdrawals/{second.json['id']}/approve")
    assert again.status_code == 409

    shown = payee.withdrawal(second.json["id"])
    assert (shown["status"], shown["reason"]) == ("rejected", "account under review")
    assert payee.wallet()["available_fen"] == 300_00 - big
    payout = payee.payout_of(first.json["id"])
    assert payout.status is PayoutStatus.CREATED
    listed = client.get("/api/mp/v1/withdrawals", headers=payee.shop.consumer_headers)
    assert [w["id"] for w in listed.json] == [second.json["id"], first.json["id"]]
    assert [h["event"] for h in listed.json[0]["history"]] == ["requested", "rejected"]

    from sqlalchemy import select

    from app.audit.models import AuditEntry
    from app.extensions import db

    actions = db.session.scalars(
        select(AuditEntry.action).where(AuditEntry.target_type == "withdrawal")
    ).all()
    assert sorted(actions) == ["withdrawal.approve", "withdrawal.reject"]
    ledger_clean()


def test_debt_is_netted_first(payee: Payee) -> None:
    from app.core.money import Money
    from app.extensions import db
    from app.ledger.accounts import consumer_accounts
    from app.ledger.models import EntryReason
    from app.ledger.service import post_entry

    wallet = consumer_accounts(payee.shop.merchant.id, payee.shop.consumer_id)
    # A clawback beyond a (previous) balance left a ¥100 debt.
    post_entry(
        key="test-debt",
        reason=EntryReason.CORRECTION,
        cause_type="test",
        cause_id="debt",
        lines=[(wallet.debt, Money(-100_00)), (wallet.pending, Money(100_00))],
        merchant_id=payee.shop.merchant.id,
    )
    db.session.commit()
    assert payee.withdraw(200_01, "more-than-excess").status_code == 409
    ok = payee.withdraw(200_00, "exactly-excess")
    assert ok.status_code == 201, ok.json
    wallet_view = payee.wallet()
    assert (wallet_view["available_fen"], wallet_view["debt_fen"], wallet_view["withdrawing_fen"]) == (
        0,
        0,
        200_00,
    )
    ledger_clean()


def test_finance_sees_payouts_by_state_and_the_cli_lists_them(payee: Payee, client: FlaskClient) -> None:
    from app.extensions import db

    created = payee.withdraw(1000, "listed")
    payout = payee.payout_of(created.json["id"])
    payee.fault(api="v3.transfer_bill", mode="timeout", count=1)
    assert payee.run(payout) == "unknown"
    finance = make_staff(merchant=payee.shop.merchant, role=Role.FINANCE)
    db.session.commit()
    console = Console(client, payee.shop.merchant.slug).login(finance.email)
    listed = console.get("/api/console/v1/payouts?status=unknown")
    assert listed.status_code == 200, listed.json
    assert [(p["bill_no"], p["status"], p["submit_calls"]) for p in listed.json] == [
        (payout.bill_no, "unknown", 1)
    ]
    assert console.get("/api/console/v1/payouts?status=succeeded").json == []

    result = payee.shop.client.application.test_cli_runner().invoke(args=["payouts", "list", "--open"])
    assert result.exit_code == 0, result.output
    assert f"{payout.bill_no}\ttransfer_bill\tunknown" in result.output


def test_bill_finished_notification_makes_the_pass_due(payee: Payee) -> None:
    from datetime import timedelta

    from app.core.db import utcnow
    from app.extensions import db
    from app.queue import QueueName, get_queue

    created = payee.withdraw(1000, "notified")
    payout = payee.payout_of(created.json["id"])
    assert payee.run(payout) == "accepted"
    assert payout.next_attempt_at > utcnow() + timedelta(minutes=5)
    get_queue(QueueName.PAYOUTS).empty()

    # WeChat pushes MCHTRANSFER.BILL.FINISHED to the merchant's notify URL (verified like payments).
    payee.shop.sandbox.post(f"/transfer-bills/{payout.bill_no}/confirm")
    log = payee.shop.sandbox.get(f"/notifications?owner={payee.mchid}&event_type=MCHTRANSFER.BILL.FINISHED")
    assert [n["state"] for n in log["notifications"]] == ["delivered"]
    db.session.refresh(payout)
    assert payout.next_attempt_at <= utcnow()
    assert [job.args for job in get_queue(QueueName.PAYOUTS).get_jobs()] == [(payout.id,)]
    assert payee.run(payout, due_now=False) == "succeeded"
    ledger_clean()
