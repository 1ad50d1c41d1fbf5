"""One payment notification delivered many times at once — before it is applied and after — is applied
once, every delivery is answered and on record, and a repeat takes no second effect."""

from __future__ import annotations

from functools import partial

import pytest
from sqlalchemy import func, select

from app.events.models import DomainEvent
from app.extensions import db
from app.gateway.models import GatewayEvent
from app.orders.models import Order
from tests.races.conftest import Race

pytestmark = pytest.mark.race

ORDER_FEN, DELIVERIES = 4800, 6


def _outcome(race: Race, order_id: int) -> tuple[str, int, int]:
    """(order status, order.paid events, verified inbound log rows) of the order."""
    with race.context():
        order = db.session.get(Order, order_id)
        assert order is not None
        paid_events = db.session.scalar(
            select(func.count(DomainEvent.id)).where(
                DomainEvent.type == "order.paid", DomainEvent.subject_id == order_id
            )
        )
        logged = db.session.scalar(
            select(func.count(GatewayEvent.id)).where(
                GatewayEvent.order_id == order_id,
                GatewayEvent.direction == "inbound",
                GatewayEvent.verified.is_(True),
            )
        )
        return order.status.value, int(paid_events or 0), int(logged or 0)


def test_one_notification_delivered_many_times_at_once_is_applied_once(race: Race) -> None:
    def one_round(_: int) -> None:
        buyer = race.buyer()
        order_id, _ = race.register(buyer, ORDER_FEN)
        assert race.pay(buyer, order_id).ok
        [out_trade_no] = race.out_trade_nos(order_id)
        signed = race.forger.signed(race.forger.transaction(out_trade_no, ORDER_FEN))

        # First all at once while it is unpaid (the locked path), then again once it is applied (the
        # repeat is recognised by the statement that logs it).
        first = race.race([partial(race.notify, signed) for _ in range(DELIVERIES)])
        if not any(answer.ok for answer in first):  # SQLite answered all busy: WeChat redelivers
            first.append(race.notify(signed))
        again = race.race([partial(race.notify, signed) for _ in range(DELIVERIES)])
        answers = first + again
        race.assert_clean(answers)

        assert _outcome(race, order_id) == (
            "paid",
            1,
            # Every delivery that was not refused as busy (SQLite; it rolled back) is on record.
            sum(1 for answer in answers if not answer.busy),
        )
        assert [str(a) for a in answers if not a.ok and not a.busy] == []

    race.rounds(one_round)
