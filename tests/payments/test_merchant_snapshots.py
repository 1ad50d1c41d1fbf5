"""Notifications find their merchant in a per-process snapshot: fresh enough, never trusted blindly.

A key rotated elsewhere is picked up by the first notification signed with it; forged notifications do
not turn the snapshot into a query each; a change through this process applies at once, one made
elsewhere once the interval has passed; a suspended merchant's payments are still recorded.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from app.core.db import utcnow
from app.merchants import snapshots
from app.merchants.credentials import seal_secrets
from app.merchants.models import Merchant, MerchantStatus
from app.merchants.service import merchant_secrets
from app.orders.models import Order, OrderStatus
from tests.payments.conftest import Shop

TOTAL = 4200


@pytest.fixture
def merchant_reads(db_session: Session) -> Iterator[list[str]]:
    """Statements that look a merchant up by slug (what a callback does), as they are sent. (The test's
    own ``shop.merchant`` is refreshed by id after each commit; those reads are not counted.)"""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().startswith("SELECT") and "WHERE merchants.slug =" in statement:
            seen.append(statement)

    engine = db_session.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def _elsewhere(db_session: Session, merchant_id: int, **values: Any) -> None:
    """Change the merchant row as another process would: no ORM event reaches this one."""
    db_session.execute(
        update(Merchant.__table__).where(Merchant.__table__.c.id == merchant_id).values(**values)
    )


def _paid(shop: Shop, out_order_no: str) -> bool:
    return bool(shop.order(out_order_no)["status"] == "paid")


def test_repeat_notifications_do_not_read_the_merchant_again(shop: Shop, merchant_reads: list[str]) -> None:
    _, first = shop.prepared("SO-S1", TOTAL)
    _, second = shop.prepared("SO-S2", TOTAL)
    merchant_reads.clear()

    assert shop.notify(*shop.forger.signed(shop.forger.transaction(first, TOTAL))).status_code == 204
    assert shop.notify(*shop.forger.signed(shop.forger.transaction(second, TOTAL))).status_code == 204
    assert shop.notify(*shop.forger.signed(shop.forger.transaction(second, TOTAL))).status_code == 204

    assert len(merchant_reads) <= 1  # the first, unless a pay request already took the snapshot
    assert _paid(shop, "SO-S1") and _paid(shop, "SO-S2")


def test_a_key_rotated_elsewhere_is_used_by_the_first_notification_signed_with_it(
    shop: Shop, db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, before = shop.prepared("SO-S3", TOTAL)
    _, after = shop.prepared("SO-S4", TOTAL)
    assert shop.notify(*shop.forger.signed(shop.forger.transaction(before, TOTAL))).status_code == 204
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    new_id = "PUB_KEY_ID_0114232000000000000000000000000042"
    _elsewhere(
        db_session,
        shop.merchant.id,
        wechatpay_public_key_id=new_id,
        wechatpay_public_key_pem=new_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
        updated_at=utcnow(),
    )
    rotated = dataclasses.replace(shop.forger, key=new_key, serial=new_id)
    # The snapshot was taken a moment ago; pretend the one-second guard against reload storms has passed.
    later = time.monotonic() + 2
    monkeypatch.setattr(snapshots.time, "monotonic", lambda: later)

    response = shop.notify(*rotated.signed(rotated.transaction(after, TOTAL)))

    assert response.status_code == 204, response.json
    assert _paid(shop, "SO-S4")


def test_forged_notifications_do_not_reload_a_fresh_snapshot(shop: Shop, merchant_reads: list[str]) -> None:
    _, out_trade_no = shop.prepared("SO-S5", TOTAL)
    assert shop.notify(*shop.forger.signed(shop.forger.transaction(out_trade_no, TOTAL))).status_code == 204
    merchant_reads.clear()
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    for _ in range(5):
        headers, body = shop.forger.signed(shop.forger.transaction(out_trade_no, TOTAL), key=stranger)
        assert shop.notify(headers, body).status_code == 401

    assert merchant_reads == []


def test_a_change_through_this_process_applies_to_the_next_notification(
    shop: Shop, db_session: Session
) -> None:
    _, first = shop.prepared("SO-S6", TOTAL)
    _, second = shop.prepared("SO-S7", TOTAL)
    forger = shop.forger
    assert shop.notify(*forger.signed(forger.transaction(first, TOTAL))).status_code == 204
    merchant = db_session.get(Merchant, shop.merchant.id)
    assert merchant is not None
    merchant.mchid = "1900000777"  # e.g. `merchants update` in this process
    db_session.flush()

    response = shop.notify(*forger.signed(forger.transaction(second, TOTAL)))

    assert response.status_code == 400  # the old mchid is now another merchant's
    assert "another merchant" in response.json["message"]


def test_a_change_elsewhere_applies_once_the_interval_has_passed(
    shop: Shop, db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, first = shop.prepared("SO-S8", TOTAL)
    _, second = shop.prepared("SO-S9", TOTAL)
    forger = shop.forger
    assert shop.notify(*forger.signed(forger.transaction(first, TOTAL))).status_code == 204
    _elsewhere(db_session, shop.merchant.id, mchid="1900000777", updated_at=utcnow())
    ttl = shop.client.application.extensions["hongli.settings"].payments.merchant_cache_seconds
    later = time.monotonic() + ttl + 1
    monkeypatch.setattr(snapshots.time, "monotonic", lambda: later)

    response = shop.notify(*forger.signed(forger.transaction(second, TOTAL)))

    assert response.status_code == 400
    status = db_session.scalar(select(Order.status).where(Order.out_order_no == "SO-S9"))
    assert status is OrderStatus.PENDING_PAYMENT


def test_a_suspended_merchants_payments_are_still_recorded(shop: Shop, db_session: Session) -> None:
    """Suspension stops new business, not WeChat's word about money a customer already paid."""
    _, out_trade_no = shop.prepared("SO-S10", TOTAL)
    merchant = db_session.get(Merchant, shop.merchant.id)
    assert merchant is not None
    merchant.status = MerchantStatus.SUSPENDED
    db_session.flush()

    response = shop.notify(*shop.forger.signed(shop.forger.transaction(out_trade_no, TOTAL)))

    assert response.status_code == 204
    status = db_session.scalar(select(Order.status).where(Order.out_order_no == "SO-S10"))
    assert status is OrderStatus.PAID


def test_a_v2_key_rotated_elsewhere_is_used_by_the_first_notification_signed_with_it(
    shop: Shop, db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, before = shop.prepared("SO-S11", TOTAL)
    _, after = shop.prepared("SO-S12", TOTAL)
    url = f"/wechat/{shop.merchant.slug}/pay/notify-v2"
    assert b"SUCCESS" in shop.client.post(url, data=shop.forger.v2_payment(before, TOTAL)).data
    merchant = db_session.get(Merchant, shop.merchant.id)
    assert merchant is not None
    new_key = "V2" + "k" * 30
    sealed = seal_secrets(merchant.id, merchant_secrets(merchant).merged({"v2_api_key": new_key}))
    _elsewhere(db_session, merchant.id, sealed_credentials=sealed, updated_at=utcnow())
    later = time.monotonic() + 2
    monkeypatch.setattr(snapshots.time, "monotonic", lambda: later)

    answer = shop.client.post(url, data=shop.forger.v2_payment(after, TOTAL, sign_key=new_key))

    assert b"<return_code><![CDATA[SUCCESS]]></return_code>" in answer.data, answer.data
    assert _paid(shop, "SO-S12")
