"""The shop's lifecycle events on paid orders, and consumers' browsing events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from app.audit.service import CLI
from app.behaviour.models import BehaviourEvent
from app.shop_keys.service import create_shop_key
from tests.payments.conftest import Shop


def _at(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def _event(shop: Shop, out_order_no: str, type_: str, occurred_at: str, **extra: Any) -> TestResponse:
    return shop.client.post(
        f"/api/shop/v1/orders/{out_order_no}/events",
        headers=shop.shop_headers,
        json={"type": type_, "occurred_at": occurred_at, **extra},
    )


@pytest.fixture
def paid_order(shop: Shop) -> str:
    order = shop.register("SO-L1", 2000)
    shop.pay(order["id"])
    return "SO-L1"


def test_shipped_and_received_are_set_once(shop: Shop, paid_order: str) -> None:
    shipped_at, received_at = _at(hours=-5), _at(hours=-1)

    shipped = _event(shop, paid_order, "shipped", shipped_at)
    assert shipped.status_code == 200, shipped.json
    assert datetime.fromisoformat(shipped.json["shipped_at"]) == datetime.fromisoformat(shipped_at)
    # A replay (even with another time) keeps the first fact.
    assert _event(shop, paid_order, "shipped", _at(hours=-2)).json["shipped_at"] == shipped.json["shipped_at"]

    received = _event(shop, paid_order, "received", received_at)
    assert received.status_code == 200
    assert datetime.fromisoformat(received.json["received_at"]) == datetime.fromisoformat(received_at)
    assert received.json["shipped_at"] == shipped.json["shipped_at"]
    assert (
        _event(shop, paid_order, "received", _at(minutes=-1)).json["received_at"]
        == received.json["received_at"]
    )
    order = shop.order(paid_order)
    assert (order["status"], order["paid_fen"]) == ("paid", 2000)


def test_received_without_shipped_implies_shipped(shop: Shop, paid_order: str) -> None:
    at = _at(minutes=-30)
    body = _event(shop, paid_order, "received", at).json
    assert body["shipped_at"] == body["received_at"]


def test_after_sales_are_tracked_by_id_and_replays_are_harmless(shop: Shop, paid_order: str) -> None:
    assert (
        _event(shop, paid_order, "after_sale_opened", _at(hours=-3), after_sale_id="AS-1").status_code == 200
    )
    assert (
        _event(shop, paid_order, "after_sale_opened", _at(hours=-3), after_sale_id="AS-2").status_code == 200
    )
    replay = _event(shop, paid_order, "after_sale_opened", _at(hours=-3), after_sale_id="AS-1")
    assert replay.json["open_after_sale_ids"] == ["AS-1", "AS-2"]

    closed = _event(shop, paid_order, "after_sale_closed", _at(hours=-1), after_sale_id="AS-1")
    assert closed.json["open_after_sale_ids"] == ["AS-2"]
    again = _event(shop, paid_order, "after_sale_closed", _at(minutes=-1), after_sale_id="AS-1")
    assert again.status_code == 200 and again.json["open_after_sale_ids"] == ["AS-2"]
    assert (
        _event(shop, paid_order, "after_sale_closed", _at(minutes=-1), after_sale_id="AS-2").json[
            "open_after_sale_ids"
        ]
        == []
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "after_sale_opened", "occurred_at": _at(hours=-1)}, "after_sale_id"),
        ({"type": "after_sale_closed", "occurred_at": _at(hours=-1)}, "after_sale_id"),
        ({"type": "lost", "occurred_at": _at(hours=-1)}, "type"),
        ({"type": "shipped", "occurred_at": "2026-11-27T10:00:00"}, "occurred_at"),  # no time zone
        ({"type": "shipped"}, "occurred_at"),
    ],
)
def test_invalid_events_are_422(shop: Shop, paid_order: str, body: dict[str, Any], field: str) -> None:
    response = shop.client.post(
        f"/api/shop/v1/orders/{paid_order}/events", headers=shop.shop_headers, json=body
    )
    assert response.status_code == 422
    assert field in response.json["error"]["details"]["fields"]
    assert shop.order(paid_order)["shipped_at"] is None


def test_future_timestamps_are_refused(shop: Shop, paid_order: str) -> None:
    response = _event(shop, paid_order, "shipped", _at(hours=1))
    assert response.status_code == 422
    assert "occurred_at" in response.json["error"]["details"]["fields"]
    assert shop.order(paid_order)["shipped_at"] is None


@pytest.mark.parametrize("type_", ["shipped", "received", "after_sale_opened", "after_sale_closed"])
def test_events_on_unpaid_orders_are_refused(shop: Shop, type_: str) -> None:
    shop.prepared("SO-L2", 500)
    response = _event(shop, "SO-L2", type_, _at(minutes=-5), after_sale_id="AS-1")
    assert response.status_code == 409
    assert response.json["error"]["details"]["status"] == "pending_payment"
    order = shop.order("SO-L2")
    assert (order["shipped_at"], order["received_at"], order["open_after_sale_ids"]) == (None, None, [])


def test_another_shops_order_is_404(shop: Shop, paid_order: str) -> None:
    other = shop.sandbox.onboard("other-shop")
    key = create_shop_key(merchant_id=other.id, name="shop", actor=CLI).key
    response = shop.client.post(
        f"/api/shop/v1/orders/{paid_order}/events",
        headers={"Authorization": f"Bearer {key}"},
        json={"type": "shipped", "occurred_at": _at(minutes=-1)},
    )
    assert response.status_code == 404
    assert _event(shop, "NO-SUCH-ORDER", "shipped", _at(minutes=-1)).status_code == 404
    assert shop.order(paid_order)["shipped_at"] is None


# ---------------------------------------------------------------- behaviour events


def _trail(n: int, **extra: Any) -> list[dict[str, Any]]:
    kinds = ["view", "cart", "share"]
    return [
        {"type": kinds[i % 3], "sku": f"TEA-{i}", "page": "/goods", "occurred_at": _at(seconds=-i), **extra}
        for i in range(n)
    ]


def _post_events(
    shop: Shop, events: list[dict[str, Any]], headers: dict[str, str] | None = None
) -> TestResponse:
    return shop.client.post(
        "/api/mp/v1/events",
        json={"events": events},
        headers=shop.consumer_headers if headers is None else headers,
    )


def _count(db_session: Session, **where: Any) -> int:
    query = select(func.count()).select_from(BehaviourEvent).filter_by(**where)
    return int(db_session.scalar(query) or 0)


def test_a_batch_is_recorded_for_the_caller(shop: Shop, db_session: Session) -> None:
    response = _post_events(shop, _trail(3))
    assert response.status_code == 202, response.json
    assert response.json == {"accepted": 3}
    rows = db_session.scalars(select(BehaviourEvent).order_by(BehaviourEvent.id)).all()
    assert [(r.kind.value, r.sku, r.consumer_id, r.merchant_id) for r in rows] == [
        ("view", "TEA-0", shop.consumer_id, shop.merchant.id),
        ("cart", "TEA-1", shop.consumer_id, shop.merchant.id),
        ("share", "TEA-2", shop.consumer_id, shop.merchant.id),
    ]


def test_batch_size_is_limited_to_100(shop: Shop, db_session: Session) -> None:
    assert _post_events(shop, _trail(101)).status_code == 422
    assert _post_events(shop, []).status_code == 422
    assert _count(db_session) == 0
    assert _post_events(shop, _trail(100)).json == {"accepted": 100}
    assert _count(db_session, consumer_id=shop.consumer_id) == 100


@pytest.mark.parametrize(
    "event",
    [
        {"type": "purchase", "occurred_at": _at(seconds=-1)},
        {"type": "VIEW", "occurred_at": _at(seconds=-1)},
        {"sku": "TEA-1", "occurred_at": _at(seconds=-1)},
        {"type": "view"},
        {"type": "view", "occurred_at": "yesterday"},
        {"type": "view", "occurred_at": _at(seconds=-1), "sku": ""},
        {"type": "view", "occurred_at": _at(seconds=-1), "sku": "x" * 65},
    ],
)
def test_invalid_events_refuse_the_whole_batch(
    shop: Shop, db_session: Session, event: dict[str, Any]
) -> None:
    response = _post_events(shop, [*_trail(2), event])
    assert response.status_code == 422
    assert "events" in response.json["error"]["details"]["fields"]
    assert _count(db_session) == 0


@pytest.mark.parametrize("delta", [{"days": -8}, {"minutes": 11}], ids=["too_old", "future"])
def test_out_of_range_times_are_refused(shop: Shop, db_session: Session, delta: dict[str, float]) -> None:
    response = _post_events(shop, [*_trail(1), {"type": "view", "occurred_at": _at(**delta)}])
    assert response.status_code == 422
    assert _count(db_session) == 0


def test_events_cannot_be_attributed_to_someone_else(shop: Shop, db_session: Session) -> None:
    shop.sandbox.user(id="bob")
    code = shop.sandbox.login_code("bob", shop.merchant.mp_appid or "")
    bob = shop.client.post("/api/mp/v1/login", json={"appid": shop.merchant.mp_appid, "code": code}).json
    bob_headers = {"Authorization": f"Bearer {bob['token']}", "X-WX-AppId": shop.merchant.mp_appid or ""}

    # Naming another consumer is not part of the schema: refused, not silently re-attributed.
    forged = _post_events(shop, _trail(1, consumer_id=shop.consumer_id), headers=bob_headers)
    assert forged.status_code == 422
    forged_batch = shop.client.post(
        "/api/mp/v1/events", headers=bob_headers, json={"events": _trail(1), "consumer_id": shop.consumer_id}
    )
    assert forged_batch.status_code == 422

    assert _post_events(shop, _trail(2), headers=bob_headers).status_code == 202
    assert _count(db_session, consumer_id=bob["user"]["id"]) == 2
    assert _count(db_session, consumer_id=shop.consumer_id) == 0


def test_events_need_a_signed_in_consumer(shop: Shop, db_session: Session) -> None:
    assert _post_events(shop, _trail(1), headers={}).status_code == 401
    assert _post_events(shop, _trail(1), headers=shop.shop_headers).status_code == 401
    assert _count(db_session) == 0
