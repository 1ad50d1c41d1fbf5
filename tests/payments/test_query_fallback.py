"""When the notification does not come: the order query (verified like a notification) decides."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.db import utcnow
from app.events.models import DomainEvent
from app.payments.service import close_expired_orders
from tests.payments.conftest import Shop


def _events(db_session: Session, type_: str) -> list[int]:
    return [e.subject_id for e in db_session.scalars(select(DomainEvent).where(DomainEvent.type == type_))]


def _sandbox_order(shop: Shop, out_trade_no: str) -> dict[str, object]:
    orders = shop.sandbox.get("/state/orders")["orders"]
    return next(o for o in orders if o["out_trade_no"] == out_trade_no)  # type: ignore[no-any-return]


def test_confirm_finds_the_payment_by_query(shop: Shop, db_session: Session) -> None:
    order, out_trade_no = shop.prepared("SO-Q1", 2600)
    shop.sandbox.post(f"/transactions/{out_trade_no}/pay", {"mchid": shop.merchant.mchid, "deliver": False})
    assert shop.order("SO-Q1")["status"] == "pending_payment"

    response = shop.client.post(f"/api/mp/v1/orders/{order['id']}/confirm", headers=shop.consumer_headers)

    assert response.status_code == 200, response.json
    assert (response.json["status"], response.json["paid_fen"]) == ("paid", 2600)
    assert response.json["transaction_id"] == _sandbox_order(shop, out_trade_no)["transaction_id"]
    assert _events(db_session, "order.paid") == [order["id"]]
    # The notification, delivered late, is a duplicate: answered 204, nothing more happens.
    shop.sandbox.post("/notifications/deliver")
    [note] = shop.sandbox.get(f"/notifications?owner={shop.merchant.mchid}")["notifications"]
    assert [(a["kind"], a["status"]) for a in note["attempts"]] == [("delivery", 204)]
    assert _events(db_session, "order.paid") == [order["id"]]


def test_confirm_of_an_unpaid_order_changes_nothing(shop: Shop, db_session: Session) -> None:
    order, _ = shop.prepared("SO-Q2", 2700)
    response = shop.client.post(f"/api/mp/v1/orders/{order['id']}/confirm", headers=shop.consumer_headers)
    assert response.status_code == 200
    assert (response.json["status"], response.json["paid_fen"]) == ("pending_payment", 0)
    assert _events(db_session, "order.paid") == []


def test_confirm_of_another_consumers_order_is_404(shop: Shop) -> None:
    order, out_trade_no = shop.prepared("SO-Q3", 2800)
    shop.sandbox.post(f"/transactions/{out_trade_no}/pay", {"mchid": shop.merchant.mchid, "deliver": False})
    shop.sandbox.user(id="mallory")
    code = shop.sandbox.login_code("mallory", shop.merchant.mp_appid or "")
    token = shop.client.post("/api/mp/v1/login", json={"appid": shop.merchant.mp_appid, "code": code}).json[
        "token"
    ]
    headers = {"Authorization": f"Bearer {token}", "X-WX-AppId": shop.merchant.mp_appid or ""}
    assert shop.client.post(f"/api/mp/v1/orders/{order['id']}/confirm", headers=headers).status_code == 404
    assert shop.order("SO-Q3")["status"] == "pending_payment"


def test_expired_orders_are_closed_here_and_at_wechat_unless_paid(shop: Shop, db_session: Session) -> None:
    unpaid, unpaid_no = shop.prepared("SO-Q4", 1500)
    paid_quietly, paid_no = shop.prepared("SO-Q5", 1600)
    # Paid at WeChat, but the notification never arrives.
    shop.sandbox.post(f"/transactions/{paid_no}/pay", {"mchid": shop.merchant.mchid, "deliver": False})

    closed = close_expired_orders(now=utcnow() + timedelta(days=1))

    assert closed == 1
    assert _sandbox_order(shop, unpaid_no)["status"] == "CLOSED"
    assert shop.order("SO-Q4")["status"] == "closed"
    assert shop.order("SO-Q4")["closed_at"] is not None
    assert _events(db_session, "order.closed") == [unpaid["id"]]
    found = shop.order("SO-Q5")
    assert (found["status"], found["paid_fen"]) == ("paid", 1600)
    assert _sandbox_order(shop, paid_no)["status"] == "SUCCESS"
    assert _events(db_session, "order.paid") == [paid_quietly["id"]]
    # A closed order cannot be paid any more; running the sweep again closes nothing twice.
    assert shop.pay_params(unpaid["id"]).status_code == 409
    assert close_expired_orders(now=utcnow() + timedelta(days=1)) == 0
    assert _events(db_session, "order.closed") == [unpaid["id"]]


def test_orders_still_in_time_are_left_alone(shop: Shop, db_session: Session) -> None:
    _, out_trade_no = shop.prepared("SO-Q6", 1700)
    assert close_expired_orders() == 0
    assert shop.order("SO-Q6")["status"] == "pending_payment"
    assert _sandbox_order(shop, out_trade_no)["status"] == "NOTPAY"


def test_an_unverifiable_query_answer_is_not_applied(shop: Shop, db_session: Session) -> None:
    order, out_trade_no = shop.prepared("SO-Q7", 1900)
    shop.sandbox.post(f"/transactions/{out_trade_no}/pay", {"mchid": shop.merchant.mchid, "deliver": False})
    shop.sandbox.post("/faults", {"api": "v3.query", "mode": "malformed", "after_commit": True, "count": 1})

    response = shop.client.post(f"/api/mp/v1/orders/{order['id']}/confirm", headers=shop.consumer_headers)

    assert response.status_code == 503
    assert response.json["error"]["code"] == "wechat_busy"
    assert shop.order("SO-Q7")["status"] == "pending_payment"
    assert _events(db_session, "order.paid") == []
    # Asked again once WeChat answers properly, the payment is found.
    again = shop.client.post(f"/api/mp/v1/orders/{order['id']}/confirm", headers=shop.consumer_headers)
    assert (again.status_code, again.json["status"]) == (200, "paid")


def test_an_order_wechat_cannot_vouch_for_is_not_closed(shop: Shop, db_session: Session) -> None:
    _, out_trade_no = shop.prepared("SO-Q8", 2000)
    shop.sandbox.post("/faults", {"api": "v3.query", "mode": "error", "code": "SYSTEM_ERROR", "count": 1})

    assert close_expired_orders(now=utcnow() + timedelta(days=1)) == 0

    assert shop.order("SO-Q8")["status"] == "pending_payment"
    assert _sandbox_order(shop, out_trade_no)["status"] == "NOTPAY"
    assert _events(db_session, "order.closed") == []
    # The next sweep, with WeChat answering, closes it.
    assert close_expired_orders(now=utcnow() + timedelta(days=1)) == 1
    assert shop.order("SO-Q8")["status"] == "closed"


def test_a_close_answered_orderpaid_applies_the_payment_instead_of_failing_the_sweep(
    shop: Shop, db_session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    order, out_trade_no = shop.prepared("SO-Q9", 2100)
    # The user paid between the sweep's query and its close: WeChat refuses the close with ORDERPAID.
    shop.sandbox.post("/faults", {"api": "v3.close", "mode": "error", "code": "ORDERPAID", "count": 1})

    with caplog.at_level(logging.WARNING, logger="hongli.payments"):
        assert close_expired_orders(now=utcnow() + timedelta(days=1)) == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []  # not a failure

    assert shop.order("SO-Q9")["status"] == "pending_payment"  # not closed; the query found no payment yet
    assert _events(db_session, "order.closed") == []
    shop.sandbox.post(f"/transactions/{out_trade_no}/pay", {"mchid": shop.merchant.mchid, "deliver": False})
    assert close_expired_orders(now=utcnow() + timedelta(days=1)) == 0
    found = shop.order("SO-Q9")
    assert (found["status"], found["paid_fen"]) == ("paid", 2100)
    assert _events(db_session, "order.paid") == [order["id"]]
