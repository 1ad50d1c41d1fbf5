"""WeChat Pay notifications: verified in the transport layer, applied idempotently in the service.

v3 (``/wechat/<merchant>/pay/notify``): signature by ``Wechatpay-Serial`` against the merchant's
platform certificates / public key, ±5 min timestamp, probes refused, AEAD-decrypted resource.
v2 (``/notify-v2``): XML parsed with defusedxml, ``sign`` checked with the v2 key.
Answers: 204 when applied (or a duplicate); 4xx/5xx with ``{"code": "FAIL", "message"}`` so WeChat
retries otherwise (§3.10).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.gateway.clients import platform_keys
from app.gateway.log import RecordingHook
from app.merchants.models import Merchant, MerchantStatus
from app.merchants.service import merchant_secrets
from app.orders.models import Order
from app.payments.models import PaymentAttempt
from app.payments.refunds import apply_refund_notification
from app.payments.service import apply_transaction
from wechat.errors import WeChatError
from wechat.notifications import parse_notification
from wechat.pay_v2 import parse_v2_notification

logger = logging.getLogger("hongli.notifications")


@dataclass(frozen=True)
class Answer:
    status: int
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status < 300


def _merchant(slug: str) -> Merchant | None:
    merchant = db.session.scalar(select(Merchant).where(Merchant.slug == slug))
    if merchant is None or merchant.status is not MerchantStatus.ACTIVE:
        return None
    return merchant


def _lock_order(merchant: Merchant, out_trade_no: str | None) -> int | None:
    """Lock the order this notification is about, first: duplicates then queue here, one at a time."""
    if not out_trade_no:
        return None
    return db.session.scalar(
        select(Order.id)
        .join(PaymentAttempt, PaymentAttempt.order_id == Order.id)
        .where(PaymentAttempt.merchant_id == merchant.id, PaymentAttempt.out_trade_no == out_trade_no)
        .with_for_update(of=Order)
    )


def handle_v3_notification(*, slug: str, headers: Mapping[str, str], body: bytes) -> Answer:
    """Verify, decrypt and apply one v3 notification for merchant ``slug``."""
    merchant = _merchant(slug)
    if merchant is None:
        return Answer(404, "unknown merchant")
    secrets = merchant_secrets(merchant)
    hook = RecordingHook(merchant.id)
    try:
        notification = parse_notification(
            headers, body, keys=platform_keys(merchant), apiv3_key=secrets.apiv3_key, hook=hook
        )
    except WeChatError as exc:
        logger.warning("refused a notification for %s: %s", slug, exc.code)
        return Answer(401, "signature verification failed")
    resource = notification.resource
    # No autoflush: the log row is then inserted once, already tied to its order.
    with db.session.no_autoflush:
        hook.attach_order(_lock_order(merchant, resource.get("out_trade_no")))
    if notification.event_type == "TRANSACTION.SUCCESS":
        applied = apply_transaction(merchant=merchant, resource=resource, source="notification")
        return Answer(204) if applied.ok else Answer(400, applied.reason)
    if notification.event_type.startswith("REFUND."):
        applied_refund = apply_refund_notification(
            merchant=merchant, event_type=notification.event_type, resource=resource
        )
        return Answer(204) if applied_refund else Answer(400, "unknown refund")
    if notification.event_type == "MCHTRANSFER.BILL.FINISHED":
        from app.payouts.service import on_transfer_bill_finished

        on_transfer_bill_finished(merchant_id=merchant.id, resource=resource)
        return Answer(204)
    # Other event types (e.g. vouchers) are acknowledged; their owners subscribe when they exist.
    logger.info("acknowledged %s for %s", notification.event_type, slug)
    return Answer(204)


def handle_v2_notification(*, slug: str, body: bytes) -> tuple[bool, str]:
    """Verify and apply a legacy v2 payment notification; (success, message) for the XML reply."""
    merchant = _merchant(slug)
    if merchant is None:
        return False, "unknown merchant"
    secrets = merchant_secrets(merchant)
    if not secrets.v2_api_key:
        return False, "v2 not configured"
    try:
        notification = parse_v2_notification(body, secrets.v2_api_key, hook=RecordingHook(merchant.id))
    except WeChatError as exc:
        logger.warning("refused a v2 notification for %s: %s", slug, exc.code)
        return False, "sign check failed"
    fields: dict[str, Any] = dict(notification.fields)
    if not notification.succeeded:
        return True, "OK"  # a failed payment changes nothing; acknowledge so WeChat stops
    try:
        total = int(str(fields.get("total_fee", "")))
    except ValueError:
        return False, "bad total_fee"
    resource = {
        "mchid": fields.get("mch_id"),
        "appid": fields.get("appid"),
        "out_trade_no": fields.get("out_trade_no"),
        "transaction_id": fields.get("transaction_id"),
        "trade_state": "SUCCESS",
        "amount": {"total": total, "currency": fields.get("fee_type", "CNY")},
    }
    applied = apply_transaction(merchant=merchant, resource=resource, source="notification-v2")
    return applied.ok, "OK" if applied.ok else applied.reason
