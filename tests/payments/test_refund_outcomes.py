"""Refund outcomes: REFUND.* notifications, final refusals and ambiguous failures of the submission."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.events.models import DomainEvent
from app.payments.models import Refund
from app.reviews.models import ReviewItem
from jobs.payments import submit_refund
from tests.payments.conftest import Shop
from wechat.errors import WeChatError


def _paid(shop: Shop, out_order_no: str, total: int) -> dict[str, Any]:
    order = shop.register(out_order_no, total)
    shop.pay(order["id"])
    assert shop.order(out_order_no)["status"] == "paid"
    return order


def _refund(db_session: Session, out_refund_no: str) -> Refund:
    refund = db_session.scalars(select(Refund).where(Refund.out_refund_no == out_refund_no)).one()
    db_session.refresh(refund)
    return refund


def _refundable(shop: Shop, out_order_no: str) -> int:
    """What the shop may still refund, as the API reports it (a refund of 1 fen too much is refused)."""
    probe = shop.refund(out_order_no, "RF-PROBE", 10**9)
    assert probe.status_code == 409
    return int(probe.json["error"]["details"]["refundable_fen"])


def _sandbox_refunds(shop: Shop, out_refund_no: str) -> list[dict[str, Any]]:
    return [r for r in shop.sandbox.get("/state/refunds")["refunds"] if r["out_refund_no"] == out_refund_no]


def _balance(shop: Shop) -> int:
    return int(shop.sandbox.get(f"/merchants/{shop.merchant.mchid}")["balance_fen"])


def test_abnormal_then_closed_makes_the_amount_refundable_again(shop: Shop, db_session: Session) -> None:
    _paid(shop, "SO-F1", 5000)
    assert shop.refund("SO-F1", "RF-1", 2000).status_code == 202
    refund = _refund(db_session, "RF-1")
    assert submit_refund(refund.id) == "processing"
    assert _refundable(shop, "SO-F1") == 3000

    shop.sandbox.post(
        f"/refunds/{refund.wechat_refund_no}/resolve", {"mchid": shop.merchant.mchid, "status": "ABNORMAL"}
    )
    assert _refund(db_session, "RF-1").status.value == "abnormal"
    assert _refundable(shop, "SO-F1") == 3000  # not final: the money may still go out

    shop.sandbox.post(
        f"/refunds/{refund.wechat_refund_no}/resolve", {"mchid": shop.merchant.mchid, "status": "CLOSED"}
    )
    closed = _refund(db_session, "RF-1")
    assert closed.status.value == "closed"
    order = shop.order("SO-F1")
    assert (order["status"], order["paid_fen"], order["refunded_fen"]) == ("paid", 5000, 0)
    assert _refundable(shop, "SO-F1") == 5000
    assert db_session.scalars(select(DomainEvent).where(DomainEvent.type == "refund.succeeded")).all() == []

    # The whole amount can now be refunded, and no more.
    assert shop.refund("SO-F1", "RF-2", 5000).status_code == 202
    second = _refund(db_session, "RF-2")
    assert submit_refund(second.id) == "processing"
    shop.sandbox.post(
        f"/refunds/{second.wechat_refund_no}/resolve", {"mchid": shop.merchant.mchid, "status": "SUCCESS"}
    )
    assert shop.order("SO-F1")["refunded_fen"] == 5000
    assert shop.refund("SO-F1", "RF-3", 1).status_code == 409


def test_late_notifications_do_not_reopen_a_final_refund(shop: Shop, db_session: Session) -> None:
    _paid(shop, "SO-F2", 3000)
    shop.refund("SO-F2", "RF-1", 3000)
    refund = _refund(db_session, "RF-1")
    submit_refund(refund.id)
    shop.sandbox.post(
        f"/refunds/{refund.wechat_refund_no}/resolve", {"mchid": shop.merchant.mchid, "status": "SUCCESS"}
    )
    [note] = shop.sandbox.get(f"/notifications?owner={shop.merchant.mchid}&event_type=REFUND.SUCCESS")[
        "notifications"
    ]

    # WeChat's retry of the same REFUND.SUCCESS, and a forged REFUND.CLOSED after it: one refund, still done.
    assert shop.notify(note["last_headers"], note["body"].encode()).status_code == 204
    closed = dict(note["resource"], refund_status="CLOSED")
    assert shop.notify(*shop.forger.signed(closed, event_type="REFUND.CLOSED")).status_code == 204
    assert _refund(db_session, "RF-1").status.value == "succeeded"
    order = shop.order("SO-F2")
    assert (order["refunded_fen"], order["paid_fen"]) == (3000, 3000)
    events = db_session.scalars(select(DomainEvent).where(DomainEvent.type == "refund.succeeded")).all()
    assert [e.payload["amount_fen"] for e in events] == [3000]


def test_refund_notification_with_another_amount_is_refused(shop: Shop, db_session: Session) -> None:
    _paid(shop, "SO-F3", 3000)
    shop.refund("SO-F3", "RF-1", 1000)
    refund = _refund(db_session, "RF-1")
    submit_refund(refund.id)
    resource = {
        "mchid": shop.merchant.mchid,
        "out_trade_no": shop.out_trade_no(refund.order_id),
        "out_refund_no": refund.wechat_refund_no,
        "refund_id": refund.refund_id,
        "refund_status": "SUCCESS",
        "amount": {"total": 3000, "refund": 3000, "payer_total": 3000, "payer_refund": 3000},
    }
    response = shop.notify(*shop.forger.signed(resource, event_type="REFUND.SUCCESS"))
    assert response.status_code == 400 and response.json["code"] == "FAIL"
    assert _refund(db_session, "RF-1").status.value == "processing"
    assert shop.order("SO-F3")["refunded_fen"] == 0


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": "1000"},
        {"amount": [1000]},
        {"amount": {"total": 3000, "refund": "1000"}},
        {"amount": {"total": 3000, "refund": 1000, "currency": 156}},
        {"refund_status": ["SUCCESS"]},
        {"out_refund_no": 1},
        {"mchid": None},
        {"success_time": {}},
    ],
    ids=lambda changes: "-".join(f"{k}={v!r}" for k, v in changes.items()),
)
def test_refund_notification_of_wrong_types_is_refused(
    shop: Shop, db_session: Session, changes: dict[str, Any]
) -> None:
    _paid(shop, "SO-F5", 3000)
    shop.refund("SO-F5", "RF-5", 1000)
    refund = _refund(db_session, "RF-5")
    submit_refund(refund.id)
    resource = {
        "mchid": shop.merchant.mchid,
        "out_trade_no": shop.out_trade_no(refund.order_id),
        "out_refund_no": refund.wechat_refund_no,
        "refund_id": refund.refund_id,
        "refund_status": "SUCCESS",
        "success_time": "2026-01-01T10:00:00+08:00",
        "amount": {"total": 3000, "refund": 1000, "payer_total": 3000, "payer_refund": 1000},
    } | changes
    response = shop.notify(*shop.forger.signed(resource, event_type="REFUND.SUCCESS"))
    assert response.status_code == 400 and response.json["code"] == "FAIL"
    assert _refund(db_session, "RF-5").status.value == "processing"
    assert shop.order("SO-F5")["refunded_fen"] == 0


def test_refunds_never_exceed_what_was_paid(shop: Shop, db_session: Session) -> None:
    _paid(shop, "SO-F4", 2500)
    over = shop.refund("SO-F4", "RF-0", 2501)
    assert over.status_code == 409 and over.json["error"]["details"]["refundable_fen"] == 2500
    for i, amount in enumerate((1000, 1000, 500)):
        assert shop.refund("SO-F4", f"RF-{i}", amount).status_code == 202
    assert shop.refund("SO-F4", "RF-9", 1).status_code == 409
    # Retrying an accepted request answers 200 with the same refund; its number for another refund is 409.
    assert shop.refund("SO-F4", "RF-1", 1000).status_code == 200
    assert shop.refund("SO-F4", "RF-1", 999).status_code == 409
    refunds = db_session.scalars(
        select(Refund).where(Refund.order_id == _refund(db_session, "RF-1").order_id)
    ).all()
    assert sum(r.amount.fen for r in refunds) == 2500


def test_unpaid_order_cannot_be_refunded(shop: Shop) -> None:
    shop.prepared("SO-F5", 900)
    response = shop.refund("SO-F5", "RF-1", 100)
    assert response.status_code == 409
    assert response.json["error"]["details"]["status"] == "pending_payment"


def test_final_refusal_fails_the_refund_and_frees_the_amount(shop: Shop, db_session: Session) -> None:
    _paid(shop, "SO-F6", 4000)
    shop.refund("SO-F6", "RF-1", 1500)
    refund = _refund(db_session, "RF-1")
    balance = _balance(shop)
    shop.sandbox.post("/faults", {"api": "v3.refund", "mode": "error", "code": "INVALID_REQUEST", "count": 1})

    assert submit_refund(refund.id) == "failed"

    failed = _refund(db_session, "RF-1")
    assert (failed.status.value, failed.failure_code) == ("failed", "INVALID_REQUEST")
    assert _refundable(shop, "SO-F6") == 4000
    assert _sandbox_refunds(shop, failed.wechat_refund_no) == []
    assert _balance(shop) == balance
    # Running the job again (RQ is at-least-once) does nothing more.
    assert submit_refund(refund.id) == "failed"
    assert _sandbox_refunds(shop, failed.wechat_refund_no) == []


@pytest.mark.parametrize(
    "fault",
    [
        {"mode": "accept_then_error"},
        {"mode": "timeout", "after_commit": True},
        {"mode": "timeout", "after_commit": False},
        {"mode": "error", "code": "SYSTEM_ERROR"},
        {"mode": "error", "code": "FREQUENCY_LIMITED"},
    ],
    ids=[
        "accept_then_error",
        "timeout_after_commit",
        "timeout_before_commit",
        "system_error",
        "rate_limited",
    ],
)
def test_unknown_outcome_is_resubmitted_with_the_same_number(
    shop: Shop, db_session: Session, fault: dict[str, Any]
) -> None:
    _paid(shop, "SO-F7", 4000)
    shop.refund("SO-F7", "RF-1", 1500)
    refund = _refund(db_session, "RF-1")
    balance = _balance(shop)
    shop.sandbox.post("/faults", {"api": "v3.refund", "count": 1, **fault})

    with pytest.raises(WeChatError):
        submit_refund(refund.id)  # RQ retries the job

    assert _refund(db_session, "RF-1").status.value == "requested"
    assert _refundable(shop, "SO-F7") == 2500  # still held while the outcome is unknown

    assert submit_refund(refund.id) == "processing"
    assert submit_refund(refund.id) == "processing"  # and again: the job is idempotent

    [at_wechat] = _sandbox_refunds(shop, refund.wechat_refund_no)
    assert at_wechat["amount"] == 1500
    assert _balance(shop) == balance - 1500
    shop.sandbox.post(
        f"/refunds/{refund.wechat_refund_no}/resolve", {"mchid": shop.merchant.mchid, "status": "SUCCESS"}
    )
    order = shop.order("SO-F7")
    assert (order["refunded_fen"], _refund(db_session, "RF-1").status.value) == (1500, "succeeded")
    assert _refundable(shop, "SO-F7") == 2500


def test_success_reported_for_a_failed_refund_is_flagged(shop: Shop, db_session: Session) -> None:
    """Hongli took WeChat's refusal as final; if WeChat later says the money went out, a person must know."""
    _paid(shop, "SO-F8", 4000)
    shop.refund("SO-F8", "RF-1", 1500)
    refund = _refund(db_session, "RF-1")
    shop.sandbox.post("/faults", {"api": "v3.refund", "mode": "error", "code": "INVALID_REQUEST", "count": 1})
    assert submit_refund(refund.id) == "failed"
    resource = {
        "mchid": shop.merchant.mchid,
        "out_trade_no": shop.out_trade_no(refund.order_id),
        "out_refund_no": refund.wechat_refund_no,
        "refund_id": "50300000000000000000000000000001",
        "refund_status": "SUCCESS",
        "success_time": "2026-11-27T12:00:00+08:00",
        "amount": {"total": 4000, "refund": 1500, "payer_total": 4000, "payer_refund": 1500},
    }

    response = shop.notify(*shop.forger.signed(resource, event_type="REFUND.SUCCESS"))

    assert response.status_code == 204  # acknowledged: retrying would not change anything
    assert _refund(db_session, "RF-1").status.value == "failed"
    assert shop.order("SO-F8")["refunded_fen"] == 0
    flagged = db_session.scalars(select(ReviewItem).where(ReviewItem.kind == "refund_mismatch")).all()
    assert [(i.reference, i.details["amount_fen"]) for i in flagged] == [
        (f"refund:{refund.wechat_refund_no}", 1500)
    ]
