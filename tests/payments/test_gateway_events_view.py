"""The console's view of every WeChat exchange about one order: the merchant's own staff only."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from app.auth.principals import Role
from tests.console_client import Console
from tests.factories import make_merchant, make_staff
from tests.payments.conftest import Shop


@pytest.fixture
def paid_order_id(shop: Shop) -> int:
    order = shop.register("SO-G1", 1800)
    shop.pay(order["id"])
    return int(order["id"])


def _console(app: Flask, slug: str, role: Role | None, merchant: object) -> Console:
    staff = make_staff(merchant=merchant, role=role)  # type: ignore[arg-type]
    return Console(app.test_client(), slug).login(staff.email)


@pytest.mark.parametrize("role", [Role.FINANCE, Role.VIEWER, Role.OWNER])
def test_finance_viewer_and_owner_see_the_exchanges(
    app: Flask, shop: Shop, db_session: Session, paid_order_id: int, role: Role
) -> None:
    console = _console(app, shop.merchant.slug, role, shop.merchant)

    response = console.get(f"/api/console/v1/orders/{paid_order_id}/gateway-events")

    assert response.status_code == 200, response.json
    seen = [(e["direction"], e["api"], e["idempotency_key"], e["verified"]) for e in response.json]
    out_trade_no = shop.out_trade_no(paid_order_id)
    assert seen == [
        ("outbound", "pay.jsapi_prepay", out_trade_no, True),
        ("inbound", "notification:TRANSACTION.SUCCESS", out_trade_no, True),
    ]
    assert [e["id"] for e in response.json] == sorted(e["id"] for e in response.json)
    # Bodies are redacted: no keys, no signatures leak into the console.
    bodies = " ".join(e["body"] for e in response.json)
    assert "PRIVATE KEY" not in bodies and "paySign" not in bodies and shop.openid not in bodies


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.REVIEWER])
def test_other_roles_are_forbidden(app: Flask, shop: Shop, paid_order_id: int, role: Role) -> None:
    console = _console(app, shop.merchant.slug, role, shop.merchant)
    assert console.get(f"/api/console/v1/orders/{paid_order_id}/gateway-events").status_code == 403


def test_another_merchants_staff_get_404(
    app: Flask, shop: Shop, db_session: Session, paid_order_id: int
) -> None:
    other = make_merchant("rival-tea")
    rival = _console(app, other.slug, Role.OWNER, other)
    response = rival.get(f"/api/console/v1/orders/{paid_order_id}/gateway-events")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"
    # Naming the order's merchant instead does not help: they have no role there.
    rival.merchant = shop.merchant.slug
    assert rival.get(f"/api/console/v1/orders/{paid_order_id}/gateway-events").status_code == 403


def test_unknown_order_is_404_and_anonymous_is_401(app: Flask, shop: Shop, paid_order_id: int) -> None:
    console = _console(app, shop.merchant.slug, Role.FINANCE, shop.merchant)
    assert console.get("/api/console/v1/orders/999999999/gateway-events").status_code == 404
    anonymous = app.test_client().get(
        f"/api/console/v1/orders/{paid_order_id}/gateway-events",
        headers={"X-Hongli-Merchant": shop.merchant.slug},
    )
    assert anonymous.status_code == 401
