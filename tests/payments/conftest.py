"""A merchant onboarded in the sandbox, its shop key, and a signed-in consumer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from app.audit.service import CLI
from app.extensions import db
from app.merchants.models import Merchant
from app.shop_keys.service import create_shop_key
from tests.payments.forge import Forger
from tests.sandbox import Sandbox


@dataclass
class Shop:
    """The merchant's shop system and one consumer of it, as HTTP callers."""

    client: FlaskClient
    sandbox: Sandbox
    merchant: Merchant
    key: str
    consumer_token: str
    consumer_id: int
    openid: str

    @property
    def shop_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    @property
    def consumer_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.consumer_token}", "X-WX-AppId": self.merchant.mp_appid or ""}

    def register(self, out_order_no: str, total_fen: int, **extra: Any) -> dict[str, Any]:
        body = {
            "out_order_no": out_order_no,
            "consumer": {"openid": self.openid},
            "total_fen": total_fen,
            "items": [
                {
                    "sku": "TEA-1",
                    "name": "Oolong tea",
                    "category": "tea",
                    "quantity": 1,
                    "unit_price_fen": total_fen,
                }
            ],
            **extra,
        }
        response = self.client.post("/api/shop/v1/orders", json=body, headers=self.shop_headers)
        assert response.status_code in (200, 201), response.json
        return response.json  # type: ignore[no-any-return]

    def pay_params(self, order_id: int, **body: Any) -> Any:
        return self.client.post(f"/api/mp/v1/orders/{order_id}/pay", json=body, headers=self.consumer_headers)

    def out_trade_no(self, order_id: int) -> str:
        from sqlalchemy import select

        from app.extensions import db
        from app.payments.models import AttemptStatus, PaymentAttempt

        return db.session.scalars(
            select(PaymentAttempt.out_trade_no).where(
                PaymentAttempt.order_id == order_id,
                PaymentAttempt.status.in_([AttemptStatus.ACTIVE, AttemptStatus.PAID]),
            )
        ).one()

    def pay(self, order_id: int) -> dict[str, Any]:
        """The whole consumer side: prepay, then the user pays in WeChat (the notification follows)."""
        response = self.pay_params(order_id)
        assert response.status_code == 200, response.json
        return self.sandbox.post(
            f"/transactions/{self.out_trade_no(order_id)}/pay", {"mchid": self.merchant.mchid}
        )  # type: ignore[no-any-return]

    def prepared(self, out_order_no: str, total_fen: int) -> tuple[dict[str, Any], str]:
        """An order with a live prepay (the consumer opened the pay sheet): (order, out_trade_no)."""
        order = self.register(out_order_no, total_fen)
        response = self.pay_params(order["id"])
        assert response.status_code == 200, response.json
        return order, self.out_trade_no(order["id"])

    @property
    def forger(self) -> Forger:
        """Signs notifications with this merchant's WeChat Pay keys (see tests/payments/forge.py)."""
        return Forger.of_sandbox(self.sandbox.world, self.merchant.mchid or "", self.merchant.mp_appid or "")

    def notify(self, headers: dict[str, str], body: bytes, slug: str | None = None) -> TestResponse:
        """Deliver a v3 notification as WeChat would (exact bytes)."""
        return self.client.post(
            f"/wechat/{slug or self.merchant.slug}/pay/notify", data=body, headers=headers
        )

    def refund(self, out_order_no: str, out_refund_no: str, amount_fen: int) -> TestResponse:
        return self.client.post(
            f"/api/shop/v1/orders/{out_order_no}/refunds",
            headers=self.shop_headers,
            json={"out_refund_no": out_refund_no, "amount_fen": amount_fen},
        )

    def order(self, out_order_no: str) -> dict[str, Any]:
        response = self.client.get(f"/api/shop/v1/orders/{out_order_no}", headers=self.shop_headers)
        assert response.status_code == 200
        return response.json  # type: ignore[no-any-return]


@pytest.fixture
def shop(client: FlaskClient, sandbox: Sandbox, db_session: Session) -> Shop:
    merchant = sandbox.onboard("acme-tea")
    key = create_shop_key(merchant_id=merchant.id, name="shop", actor=CLI).key
    user = sandbox.user(id="alice", nickname="Alice")
    code = sandbox.login_code("alice", merchant.mp_appid or "")
    login = client.post("/api/mp/v1/login", json={"appid": merchant.mp_appid, "code": code})
    assert login.status_code == 200, login.json
    return Shop(
        client,
        sandbox,
        merchant,
        key,
        login.json["token"],
        login.json["user"]["id"],
        user["openids"][merchant.mp_appid],
    )


# ---------------------------------------------------------------- real commits, many connections


@dataclass
class Committed:
    """An app on its own fresh database where every request commits for real, plus seeded rows."""

    app: Flask
    merchant_id: int
    slug: str
    consumer_id: int
    shop_key: str
    forger: Forger

    def client(self) -> FlaskClient:
        """A client of its own: its requests use their own session and connection."""
        return self.app.test_client()

    def order(self, out_order_no: str, total_fen: int, *, paid: bool) -> tuple[int, str]:
        """Seed an order with one payment attempt (paid, or awaiting payment); (order id, out_trade_no)."""
        from app.core.db import utcnow
        from app.core.money import Money
        from app.orders.models import Order, OrderStatus
        from app.payments.models import AttemptStatus, PaymentAttempt

        with self.app.app_context():
            now = utcnow()
            order = Order(
                merchant_id=self.merchant_id,
                consumer_id=self.consumer_id,
                out_order_no=out_order_no,
                request_digest="0" * 64,
                total=Money(total_fen),
                items=[],
                description="tea",
                open_after_sale_ids=[],
                status=OrderStatus.PAID if paid else OrderStatus.PENDING_PAYMENT,
                paid_amount=Money(total_fen if paid else 0),
                paid_at=now if paid else None,
                transaction_id="4200000000000000000000000001" if paid else None,
            )
            db.session.add(order)
            db.session.flush()
            attempt = PaymentAttempt(
                merchant_id=self.merchant_id,
                order_id=order.id,
                out_trade_no=f"HL{order.id:08d}P1",
                appid=self.forger.appid,
                payer_openid="o-buyer",
                amount=Money(total_fen),
                status=AttemptStatus.PAID if paid else AttemptStatus.ACTIVE,
                expires_at=now + timedelta(minutes=30),
            )
            db.session.add(attempt)
            db.session.commit()
            return order.id, attempt.out_trade_no


@pytest.fixture
def committed(
    empty_database_url: str,
    redis_url: str,
    app_factory: Any,
    sandbox_keys: list[Any],
    tmp_path: Path,
    redis: Any,
) -> Iterator[Committed]:
    """A migrated app on a fresh database (dropped by ``empty_database_url``) with a WeChat Pay merchant."""
    from flask_migrate import upgrade

    from app.merchants.service import create_merchant
    from app.settings import load_settings
    from tests.factories import make_consumer
    from wechat.sandbox import crypto as sb_crypto

    config = tmp_path / "config.toml"
    config.write_text("")
    settings = load_settings(
        config_path=config,
        environ={
            "HONGLI_ENV": "test",
            "HONGLI_DATABASE__URL": empty_database_url,
            "HONGLI_DATABASE__POOL_SIZE": "60",
            "HONGLI_REDIS__URL": redis_url,
            "HONGLI_QUEUE__PREFIX": "hongli-test",
            "HONGLI_LOGGING__FORMAT": "text",
        },
    )
    application = app_factory(settings)
    merchant_key, wechat_key = sandbox_keys[0], sandbox_keys[1]
    mchid, appid, apiv3_key, key_id = (
        "1900012345",
        "wx00000000c0ffee00",
        "k" * 32,
        "PUB_KEY_ID_0100000000000000000000000000000001",
    )
    with application.app_context():
        upgrade()
        merchant = create_merchant(
            document={
                "slug": "concurrent-tea",
                "name": "Concurrent Tea",
                "miniprogram": {"appid": appid, "secret": "s" * 32},
                "pay": {
                    "mchid": mchid,
                    "serial_no": "ABCDEF0123456789",
                    "private_key": sb_crypto.private_key_pem(merchant_key),
                    "apiv3_key": apiv3_key,
                    "wechatpay_public_key_id": key_id,
                    "wechatpay_public_key": sb_crypto.public_key_pem(wechat_key.public_key()),
                },
            },
            actor=CLI,
        )
        consumer = make_consumer(merchant)
        shop_key = create_shop_key(merchant_id=merchant.id, name="shop", actor=CLI).key
        db.session.commit()
        seeded = Committed(
            application,
            merchant.id,
            merchant.slug,
            consumer.id,
            shop_key,
            Forger(mchid, appid, apiv3_key, wechat_key, key_id),
        )
    yield seeded
