"""The same payment notification, however often it arrives, has one effect and is always answered 204."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.events.models import DomainEvent
from app.gateway.models import GatewayEvent
from app.payments.models import PaymentAttempt
from app.reviews.models import ReviewItem
from tests.payments.conftest import Shop


def _paid_events(db_session: Session) -> list[tuple[int, int]]:
    events = db_session.scalars(select(DomainEvent).where(DomainEvent.type == "order.paid")).all()
    return [(e.subject_id, e.payload["paid_fen"]) for e in events]


def _notifications(shop: Shop, event_type: str = "TRANSACTION.SUCCESS") -> list[dict[str, Any]]:
    log = shop.sandbox.get(f"/notifications?owner={shop.merchant.mchid}&event_type={event_type}")
    return log["notifications"]  # type: ignore[no-any-return]


def test_same_verified_notification_twice_is_one_payment(shop: Shop, db_session: Session) -> None:
    order, out_trade_no = shop.prepared("SO-D1", 3300)
    headers, body = shop.forger.signed(shop.forger.transaction(out_trade_no, 3300))

    first = shop.notify(headers, body)
    second = shop.notify(headers, body)

    assert (first.status_code, second.status_code) == (204, 204)
    assert _paid_events(db_session) == [(order["id"], 3300)]
    paid = shop.order("SO-D1")
    assert (paid["status"], paid["paid_fen"]) == ("paid", 3300)
    attempts = db_session.scalars(select(PaymentAttempt).where(PaymentAttempt.order_id == order["id"])).all()
    assert [a.status.value for a in attempts] == ["paid"]
    # Both deliveries are in the gateway log, verified and tied to the order.
    inbound = db_session.scalars(
        select(GatewayEvent).where(GatewayEvent.order_id == order["id"], GatewayEvent.direction == "inbound")
    ).all()
    assert [e.verified for e in inbound] == [True, True]


def test_sandbox_duplicate_delivery_is_absorbed(shop: Shop, db_session: Session) -> None:
    shop.sandbox.post(f"/merchants/{shop.merchant.mchid}/settings", {"duplicate_notifications": True})
    order = shop.register("SO-D2", 4100)

    shop.pay(order["id"])
    shop.sandbox.post("/clock/advance", {"seconds": 2})  # WeChat's second path, ~1 s later (§3.10)

    [note] = _notifications(shop)
    assert [(a["kind"], a["status"]) for a in note["attempts"]] == [("delivery", 204), ("duplicate", 204)]
    assert _paid_events(db_session) == [(order["id"], 4100)]
    assert shop.order("SO-D2")["paid_fen"] == 4100


def test_probe_before_delivery_is_refused_and_ignored(shop: Shop, db_session: Session) -> None:
    shop.sandbox.post(f"/merchants/{shop.merchant.mchid}/settings", {"probe_notifications": True})
    order = shop.register("SO-D3", 4200)

    shop.pay(order["id"])

    [note] = _notifications(shop)
    assert [(a["kind"], a["status"]) for a in note["attempts"]] == [("probe", 401), ("delivery", 204)]
    assert _paid_events(db_session) == [(order["id"], 4200)]
    probes = db_session.scalars(
        select(GatewayEvent).where(
            GatewayEvent.wechat_code == "SIGNATURE_PROBE", GatewayEvent.verified.is_(False)
        )
    ).all()
    assert len(probes) == 1


def test_lost_answer_is_absorbed_by_wechats_retry(shop: Shop, db_session: Session) -> None:
    """Hongli committed, but the 204 never reached WeChat: its retry (same body) changes nothing more."""
    order = shop.register("SO-D4", 5200)
    shop.pay(order["id"])
    [note] = _notifications(shop)
    assert note["state"] == "delivered"
    before = shop.order("SO-D4")

    retry = shop.notify(note["last_headers"], note["body"].encode())

    assert retry.status_code == 204
    assert _paid_events(db_session) == [(order["id"], 5200)]
    after = shop.order("SO-D4")
    assert (after["status"], after["paid_fen"], after["paid_at"], after["transaction_id"]) == (
        "paid",
        5200,
        before["paid_at"],
        before["transaction_id"],
    )


def test_wechat_retries_until_answered(
    shop: Shop, db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delivery that never reached Hongli (its URL was down) is retried on WeChat's schedule."""
    order, out_trade_no = shop.prepared("SO-D5", 6100)
    notifier = shop.sandbox.world.notifier
    deliver = notifier._transport
    attempts: list[str] = []

    def down_once(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        attempts.append(url)
        if len(attempts) == 1:
            raise ConnectionError("merchant endpoint down")
        return deliver(url, body, headers, timeout)

    monkeypatch.setattr(notifier, "_transport", down_once)
    shop.sandbox.post(f"/transactions/{out_trade_no}/pay", {"mchid": shop.merchant.mchid})
    assert shop.order("SO-D5")["status"] == "pending_payment"

    shop.sandbox.post("/clock/advance", {"seconds": 16})  # the first retry is due after 15 s (§3.10)

    [note] = _notifications(shop)
    assert [(a["kind"], a["ok"]) for a in note["attempts"]] == [("delivery", False), ("delivery", True)]
    assert _paid_events(db_session) == [(order["id"], 6100)]


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": {"total": 3299, "currency": "CNY"}},
        {"appid": "wx0000000000000000"},
        {"trade_state": "REFUND"},
    ],
    ids=["other_amount", "other_app", "not_success"],
)
def test_a_replay_of_a_paid_attempt_with_other_terms_is_refused_not_taken_for_a_duplicate(
    shop: Shop, db_session: Session, changes: dict[str, Any]
) -> None:
    """Only a repeat that the locked path would call a duplicate is answered without it."""
    order, out_trade_no = shop.prepared("SO-D6", 3300)
    assert shop.notify(*shop.forger.signed(shop.forger.transaction(out_trade_no, 3300))).status_code == 204

    response = shop.notify(*shop.forger.signed(shop.forger.transaction(out_trade_no, 3300, **changes)))

    assert response.status_code == 400
    assert _paid_events(db_session) == [(order["id"], 3300)]
    flagged = db_session.scalars(select(ReviewItem)).all()
    assert [(item.kind, item.reference) for item in flagged] == [
        ("payment_mismatch", f"notification:{out_trade_no}")
    ]
    inbound = db_session.scalars(
        select(GatewayEvent).where(GatewayEvent.order_id == order["id"], GatewayEvent.direction == "inbound")
    ).all()
    assert [e.verified for e in inbound] == [True, True]


def test_a_notification_for_an_unknown_payment_is_logged_without_an_order(
    shop: Shop, db_session: Session
) -> None:
    response = shop.notify(*shop.forger.signed(shop.forger.transaction("HL99999999P1", 3300)))

    assert response.status_code == 400
    inbound = db_session.scalars(select(GatewayEvent).where(GatewayEvent.direction == "inbound")).all()
    assert [(e.verified, e.order_id, e.idempotency_key) for e in inbound] == [(True, None, "HL99999999P1")]
