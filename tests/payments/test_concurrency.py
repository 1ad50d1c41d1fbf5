"""Races on real commits: each thread is its own client, session and database connection."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import responses
from requests import PreparedRequest
from sqlalchemy import func, select, text, update

from app.events.models import DomainEvent
from app.extensions import db
from app.orders.models import Order
from app.payments.models import AttemptStatus, PaymentAttempt, Refund, RefundStatus
from jobs.payments import submit_refund
from tests.payments.conftest import Committed

T = TypeVar("T")


def _race(n: int, call: Callable[[int], T]) -> list[T]:
    """Run ``call(i)`` for i in range(n) on n threads released together."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T:
        barrier.wait(timeout=30)
        return call(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def test_fifty_concurrent_deliveries_pay_once(committed: Committed) -> None:
    order_id, out_trade_no = committed.order("SO-C1", 7700, paid=False)
    headers, body = committed.forger.signed(committed.forger.transaction(out_trade_no, 7700))
    url = f"/wechat/{committed.slug}/pay/notify"

    statuses = _race(50, lambda _: committed.client().post(url, data=body, headers=headers).status_code)

    assert statuses == [204] * 50
    with committed.app.app_context():
        order = db.session.get(Order, order_id)
        assert order is not None
        assert (order.status.value, order.paid_amount.fen) == ("paid", 7700)
        events = db.session.scalars(select(DomainEvent).where(DomainEvent.type == "order.paid")).all()
        assert [(e.subject_id, e.payload["paid_fen"]) for e in events] == [(order_id, 7700)]
        attempts = db.session.scalars(
            select(PaymentAttempt.status).where(PaymentAttempt.order_id == order_id)
        ).all()
        assert attempts == [AttemptStatus.PAID]


def test_concurrent_refunds_never_exceed_what_was_paid(committed: Committed) -> None:
    order_id, _ = committed.order("SO-C2", 5000, paid=True)
    headers = {"Authorization": f"Bearer {committed.shop_key}"}

    def refund(i: int) -> int:
        response = committed.client().post(
            "/api/shop/v1/orders/SO-C2/refunds",
            headers=headers,
            json={"out_refund_no": f"RF-C{i}", "amount_fen": 1000},
        )
        return response.status_code

    statuses = _race(10, refund)

    assert sorted(statuses) == [202] * 5 + [409] * 5
    with committed.app.app_context():
        order = db.session.get(Order, order_id)
        assert order is not None
        assert order.refund_committed.fen == 5000
        accepted = db.session.scalars(
            select(Refund.amount).where(Refund.order_id == order_id, Refund.status == RefundStatus.REQUESTED)
        ).all()
        assert sum(a.fen for a in accepted) == 5000 and len(accepted) == 5
        assert db.session.scalar(select(func.count()).where(Refund.order_id == order_id)) == 5


def test_concurrent_retries_of_one_refund_create_one(committed: Committed) -> None:
    order_id, _ = committed.order("SO-C3", 5000, paid=True)
    headers = {"Authorization": f"Bearer {committed.shop_key}"}

    statuses = _race(
        10,
        lambda _: (
            committed.client()
            .post(
                "/api/shop/v1/orders/SO-C3/refunds",
                headers=headers,
                json={"out_refund_no": "RF-SAME", "amount_fen": 1500},
            )
            .status_code
        ),
    )

    assert sorted(statuses) == [200] * 9 + [202]
    with committed.app.app_context():
        order = db.session.get(Order, order_id)
        assert order is not None and order.refund_committed.fen == 1500
        assert db.session.scalar(select(func.count()).where(Refund.order_id == order_id)) == 1


def test_refund_refusal_does_not_undo_a_concurrent_refund_request(committed: Committed) -> None:
    """WeChat refuses refund A while the shop asks for refund B: A's amount is freed, B's stays held."""
    order_id, _ = committed.order("SO-C4", 5000, paid=True)
    headers = {"Authorization": f"Bearer {committed.shop_key}"}
    client = committed.client()
    assert (
        client.post(
            "/api/shop/v1/orders/SO-C4/refunds",
            headers=headers,
            json={"out_refund_no": "RF-A", "amount_fen": 1000},
        ).status_code
        == 202
    )
    with committed.app.app_context():
        refund_a = db.session.scalars(select(Refund.id).where(Refund.out_refund_no == "RF-A")).one()
    answers: list[int] = []

    def request_b() -> None:
        response = committed.client().post(
            "/api/shop/v1/orders/SO-C4/refunds",
            headers=headers,
            json={"out_refund_no": "RF-B", "amount_fen": 4000},
        )
        answers.append(response.status_code)

    shop_asks = threading.Thread(target=request_b)

    def wechat_refuses(request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        # While the job waits for WeChat's answer, the shop's request for B comes in (it may have to wait).
        shop_asks.start()
        shop_asks.join(timeout=1)
        return (
            400,
            {"Content-Type": "application/json"},
            json.dumps({"code": "INVALID_REQUEST", "message": "refused"}),
        )

    pay_base = committed.app.extensions["hongli.settings"].wechat.pay_base_url.rstrip("/")
    with responses.RequestsMock() as mock:
        mock.add_callback("POST", f"{pay_base}/v3/refund/domestic/refunds", callback=wechat_refuses)
        with committed.app.app_context():
            assert submit_refund(refund_a) == "failed"
    shop_asks.join(timeout=30)

    assert answers == [202]
    with committed.app.app_context():
        order = db.session.get(Order, order_id)
        assert order is not None
        held = db.session.scalars(
            select(Refund.amount).where(Refund.order_id == order_id, Refund.status == RefundStatus.REQUESTED)
        ).all()
        assert [m.fen for m in held] == [4000]
        assert order.refund_committed.fen == 4000


def _waiting_on_a_lock(timeout: float = 10.0) -> bool:
    """Whether another backend of this database is waiting for a row lock (polled up to ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.engine.connect() as probe:
            waiting = probe.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        if waiting:
            return True
        time.sleep(0.05)
    return False


def test_a_notification_waits_for_the_order_without_holding_its_attempt(committed: Committed) -> None:
    """The expiry sweep and the pay endpoint lock an order, then write its attempts. A notification that
    arrives meanwhile must queue on the order holding nothing else, or the two deadlock."""
    order_id, out_trade_no = committed.order("SO-C9", 3300, paid=False)
    headers, body = committed.forger.signed(committed.forger.transaction(out_trade_no, 3300))
    answers: list[int] = []
    with committed.app.app_context():
        sweep = db.engine.connect()
        with sweep.begin():
            sweep.execute(select(Order.id).where(Order.id == order_id).with_for_update())
            notification = threading.Thread(
                target=lambda: answers.append(
                    committed.client()
                    .post(f"/wechat/{committed.slug}/pay/notify", data=body, headers=headers)
                    .status_code
                )
            )
            notification.start()
            assert _waiting_on_a_lock()
            # What close_order does next while still holding the order: write the attempt.
            sweep.execute(
                update(PaymentAttempt)
                .where(PaymentAttempt.order_id == order_id)
                .values(expires_at=func.now())
            )
        sweep.close()
        notification.join(timeout=30)

        assert answers == [204]
        order = db.session.get(Order, order_id)
        assert order is not None and order.status.value == "paid"
