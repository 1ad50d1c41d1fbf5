"""End to end through the sandbox: the shop registers, the consumer pays, WeChat notifies, refunds settle."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.events.models import DomainEvent
from app.gateway.models import GatewayEvent
from app.merchants.service import merchant_secrets
from app.payments.models import Refund
from jobs.payments import submit_refund
from tests.payments.conftest import Shop


def test_registration_is_idempotent_on_out_order_no(shop: Shop, db_session: Session) -> None:
    first = shop.register("SO-1", 20000)
    again = shop.register("SO-1", 20000)
    assert again["id"] == first["id"]
    changed = shop.client.post(
        "/api/shop/v1/orders",
        headers=shop.shop_headers,
        json={
            "out_order_no": "SO-1",
            "consumer": {"openid": shop.openid},
            "total_fen": 19900,
            "items": [{"sku": "TEA-1", "name": "Oolong tea", "quantity": 1, "unit_price_fen": 19900}],
        },
    )
    assert changed.status_code == 409
    assert changed.json["error"]["code"] == "conflict"


def test_total_must_add_up_and_money_is_integer_fen(shop: Shop) -> None:
    response = shop.client.post(
        "/api/shop/v1/orders",
        headers=shop.shop_headers,
        json={
            "out_order_no": "SO-2",
            "consumer": {"openid": shop.openid},
            "total_fen": 200.5,
            "items": [{"sku": "A", "name": "A", "quantity": 2, "unit_price_fen": 100}],
        },
    )
    assert response.status_code == 422
    assert "total_fen" in response.json["error"]["details"]["fields"]
    mismatch = shop.client.post(
        "/api/shop/v1/orders",
        headers=shop.shop_headers,
        json={
            "out_order_no": "SO-2",
            "consumer": {"openid": shop.openid},
            "total_fen": 300,
            "items": [{"sku": "A", "name": "A", "quantity": 2, "unit_price_fen": 100}],
        },
    )
    assert mismatch.status_code == 422


def test_pay_returns_signed_request_payment_params(shop: Shop) -> None:
    order = shop.register("SO-3", 20000)
    response = shop.pay_params(order["id"])
    assert response.status_code == 200, response.json
    body = response.json
    assert body["payable_fen"] == 20000 and body["discount_fen"] == 0
    params = body["payment"]
    assert params["package"].startswith("prepay_id=") and params["signType"] == "RSA"
    # paySign verifies with the merchant's key over appId\ntimeStamp\nnonceStr\npackage\n (§3.8).
    key = serialization.load_pem_private_key(
        merchant_secrets(shop.merchant).pay_private_key_pem.encode(), None
    )
    message = f"{shop.merchant.mp_appid}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
    key.public_key().verify(  # type: ignore[union-attr,call-arg]
        base64.b64decode(params["paySign"]),
        message.encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),  # type: ignore[arg-type]
    )
    # Asking again while the prepay is valid gives the very same parameters.
    assert shop.pay_params(order["id"]).json["payment"] == params


def test_pay_and_notification_mark_the_order_paid_once(shop: Shop, db_session: Session) -> None:
    order = shop.register("SO-4", 20000)
    shop.pay(order["id"])
    paid = shop.order("SO-4")
    assert paid["status"] == "paid"
    assert paid["paid_fen"] == 20000
    assert paid["transaction_id"]
    events = db_session.scalars(select(DomainEvent).where(DomainEvent.type == "order.paid")).all()
    assert [(e.subject_id, e.payload["paid_fen"]) for e in events] == [(order["id"], 20000)]
    # Paying again is refused; the gateway log shows the prepay and the verified notification.
    assert shop.pay_params(order["id"]).status_code == 409
    logged = db_session.scalars(select(GatewayEvent).where(GatewayEvent.order_id == order["id"])).all()
    assert {(e.direction, e.verified) for e in logged} >= {("outbound", True), ("inbound", True)}


def test_another_consumers_order_is_invisible(shop: Shop) -> None:
    order = shop.register("SO-5", 500)
    shop.sandbox.user(id="bob")
    code = shop.sandbox.login_code("bob", shop.merchant.mp_appid or "")
    bob = shop.client.post("/api/mp/v1/login", json={"appid": shop.merchant.mp_appid, "code": code}).json
    headers = {"Authorization": f"Bearer {bob['token']}", "X-WX-AppId": shop.merchant.mp_appid or ""}
    assert shop.client.get(f"/api/mp/v1/orders/{order['id']}", headers=headers).status_code == 404
    assert (
        shop.client.post(f"/api/mp/v1/orders/{order['id']}/pay", json={}, headers=headers).status_code == 404
    )
    assert (
        shop.client.get(f"/api/mp/v1/orders/{order['id']}", headers=shop.consumer_headers).status_code == 200
    )


def test_partial_then_full_refund_settle(shop: Shop, db_session: Session) -> None:
    order = shop.register("SO-6", 5000)
    shop.pay(order["id"])
    partial = shop.client.post(
        "/api/shop/v1/orders/SO-6/refunds",
        headers=shop.shop_headers,
        json={"out_refund_no": "RF-1", "amount_fen": 2000, "reason": "one cup broken"},
    )
    assert partial.status_code == 202, partial.json
    refund = db_session.scalars(select(Refund).where(Refund.out_refund_no == "RF-1")).one()
    assert submit_refund(refund.id) == "processing"
    shop.sandbox.post(
        f"/refunds/{refund.wechat_refund_no}/resolve", {"mchid": shop.merchant.mchid, "status": "SUCCESS"}
    )
    assert shop.order("SO-6")["refunded_fen"] == 2000
    too_much = shop.client.post(
        "/api/shop/v1/orders/SO-6/refunds",
        headers=shop.shop_headers,
        json={"out_refund_no": "RF-2", "amount_fen": 3001},
    )
    assert too_much.status_code == 409
    assert too_much.json["error"]["details"]["refundable_fen"] == 3000
    rest = shop.client.post(
        "/api/shop/v1/orders/SO-6/refunds",
        headers=shop.shop_headers,
        json={"out_refund_no": "RF-2", "amount_fen": 3000},
    )
    assert rest.status_code == 202
    second = db_session.scalars(select(Refund).where(Refund.out_refund_no == "RF-2")).one()
    submit_refund(second.id)
    shop.sandbox.post(
        f"/refunds/{second.wechat_refund_no}/resolve", {"mchid": shop.merchant.mchid, "status": "SUCCESS"}
    )
    final = shop.order("SO-6")
    assert final["refunded_fen"] == 5000
    listing = shop.client.get("/api/shop/v1/orders/SO-6/refunds", headers=shop.shop_headers).json
    assert [(r["out_refund_no"], r["status"]) for r in listing] == [
        ("RF-1", "succeeded"),
        ("RF-2", "succeeded"),
    ]
    succeeded = db_session.scalar(select(func.count()).where(DomainEvent.type == "refund.succeeded"))
    assert succeeded == 2
