"""Hostile or wrong coupon notifications: a forged or tampered one is refused (401, WeChat retries); an
unknown coupon, another stock's or another merchant's is acknowledged and ignored; a repeat changes
nothing. The coupon, the ledger and the gateway log say so."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.coupons.models import Coupon, CouponStatus
from app.gateway.models import GatewayEvent
from app.ledger.accounts import campaign_accounts
from app.ledger.models import JournalEntry
from tests.coupons.conftest import WORST_CASE, Marketing, ledger_clean, run_jobs
from wechat.sandbox.clock import rfc3339


def _use(coupon: Coupon, stock_id: str, mchid: str, **changes: Any) -> dict[str, Any]:
    return {
        "stock_creator_mchid": mchid,
        "stock_id": stock_id,
        "coupon_id": coupon.wechat_coupon_id,
        "status": "USED",
        "coupon_type": "NORMAL",
        "consume_information": {
            "consume_time": rfc3339(time.time()),
            "consume_mchid": mchid,
            "transaction_id": "4200000000000000000000009999",
        },
    } | changes


def _sent_coupon(marketing: Marketing, db_session: Session) -> tuple[Coupon, str]:
    stock = marketing.stock()
    issued = marketing.console.post(
        f"/api/console/v1/coupon-stocks/{stock['id']}/coupons",
        json={"consumer_id": marketing.shop.consumer_id, "idempotency_key": "bad-1"},
    )
    assert issued.status_code == 201, issued.json
    assert run_jobs("jobs.coupons.send_coupon") == 1
    coupon = db_session.get(Coupon, issued.json["id"])
    assert coupon is not None and coupon.status is CouponStatus.SENT
    return coupon, stock["wechat_stock_id"]


def _notify(marketing: Marketing, headers: dict[str, str], body: bytes, slug: str | None = None) -> Any:
    return marketing.shop.client.post(
        f"/wechat/{slug or marketing.shop.merchant.slug}/coupons/notify", data=body, headers=headers
    )


def _entries(db_session: Session) -> int:
    return int(db_session.scalar(select(func.count(JournalEntry.id))) or 0)


def test_forged_unknown_and_foreign_coupon_uses_change_nothing(
    marketing: Marketing, app: Flask, db_session: Session
) -> None:
    shop = marketing.shop
    coupon, stock_id = _sent_coupon(marketing, db_session)
    mchid = shop.merchant.mchid or ""
    forger = shop.forger
    entries = _entries(db_session)
    logged = db_session.scalar(select(func.count(GatewayEvent.id)))

    # Forged (signed with another key), tampered ciphertext, stale timestamp: refused, WeChat retries.
    from wechat.sandbox import crypto as sb_crypto

    headers, body = forger.signed(
        _use(coupon, stock_id, mchid), event_type="COUPON.USE", key=sb_crypto.generate_rsa_key()
    )
    assert _notify(marketing, headers, body).status_code == 401
    headers, body = forger.signed(_use(coupon, stock_id, mchid), event_type="COUPON.USE", tamper=True)
    assert _notify(marketing, headers, body).status_code == 401
    headers, body = forger.signed(
        _use(coupon, stock_id, mchid), event_type="COUPON.USE", timestamp=int(time.time()) - 3600
    )
    assert _notify(marketing, headers, body).status_code == 401

    # Genuine but not ours to apply: an unknown coupon, another stock, another merchant's stock.
    for resource in (
        _use(coupon, stock_id, mchid, coupon_id="99999999"),
        _use(coupon, "12345678", mchid),
        _use(coupon, stock_id, "1900000999"),
        _use(coupon, stock_id, mchid, coupon_id=12345),  # a wrong type
    ):
        headers, body = forger.signed(resource, event_type="COUPON.USE")
        assert _notify(marketing, headers, body).status_code == 204
    assert (
        _notify(
            marketing,
            *forger.signed(_use(coupon, stock_id, mchid), event_type="COUPON.USE"),
            slug="no-such-shop",
        ).status_code
        == 404
    )

    db_session.refresh(coupon)
    assert coupon.status is CouponStatus.SENT and coupon.booked_at is None
    assert _entries(db_session) == entries
    assert (db_session.scalar(select(func.count(GatewayEvent.id))) or 0) > (logged or 0)  # every one logged
    ledger_clean()


def test_a_use_without_its_payment_waits_and_a_repeat_is_one_use(
    marketing: Marketing, app: Flask, db_session: Session
) -> None:
    shop = marketing.shop
    coupon, stock_id = _sent_coupon(marketing, db_session)
    mchid = shop.merchant.mchid or ""
    entries = _entries(db_session)
    for _ in range(2):
        headers, body = shop.forger.signed(_use(coupon, stock_id, mchid), event_type="COUPON.USE")
        assert _notify(marketing, headers, body).status_code == 204
    db_session.refresh(coupon)
    # Used at WeChat on a payment Hongli does not know: the coupon is used, nothing is booked.
    assert coupon.status is CouponStatus.USED and coupon.order_id is None and coupon.booked_at is None
    assert coupon.reserved.fen > 0  # still held until the payment names its order
    assert _entries(db_session) == entries
    ledger_clean()
    # A week after its validity, with no payment ever naming it, its reservation goes back to the budget.
    from datetime import timedelta

    from app.core.db import utcnow
    from app.coupons.redemption import expire_coupons

    accounts = campaign_accounts(shop.merchant.id, marketing.campaign_id)
    held = accounts.reserved.balance.fen
    assert expire_coupons(now=utcnow() + timedelta(days=30)) == 0
    assert accounts.reserved.balance.fen == held
    expire_coupons(now=utcnow() + timedelta(days=40))
    db_session.refresh(coupon)
    assert coupon.status is CouponStatus.USED and coupon.reserved.fen == 0
    assert accounts.reserved.balance.fen == held - WORST_CASE
    ledger_clean()


def test_console_roles_a_viewer_reads_an_operator_changes(
    marketing: Marketing, client: FlaskClient, db_session: Session
) -> None:
    from app.auth.principals import Role
    from tests.console_client import Console
    from tests.factories import make_staff

    stock = marketing.stock()
    viewer = Console(client, marketing.shop.merchant.slug).login(
        make_staff(merchant=marketing.shop.merchant, role=Role.VIEWER).email
    )
    assert viewer.get("/api/console/v1/coupon-stocks").status_code == 200
    assert viewer.get("/api/console/v1/coupons/metrics").status_code == 200
    assert viewer.get(f"/api/console/v1/coupon-stocks/{stock['id']}/coupons").status_code == 200
    refused = viewer.post(f"/api/console/v1/coupon-stocks/{stock['id']}/status", json={"status": "paused"})
    assert refused.status_code == 403
    refused = viewer.post(
        f"/api/console/v1/coupon-stocks/{stock['id']}/coupons",
        json={"consumer_id": marketing.shop.consumer_id, "idempotency_key": "v"},
    )
    assert refused.status_code == 403
    assert db_session.scalar(select(func.count(Coupon.id))) == 0
