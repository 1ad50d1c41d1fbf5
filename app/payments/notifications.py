"""WeChat Pay notifications: verified in the transport layer, applied idempotently in the service.

v3 (``/wechat/<merchant>/pay/notify``): signature by ``Wechatpay-Serial`` against the merchant's
platform certificates / public key, ±5 min timestamp, probes refused, AEAD-decrypted resource.
v2 (``/notify-v2``): XML parsed with defusedxml, ``sign`` checked with the v2 key.
Answers: 204 when applied (or a duplicate); 4xx/5xx with ``{"code": "FAIL", "message"}`` so WeChat
retries otherwise (§3.10).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy import Table, TextualSelect, bindparam, column, select, text

from app.extensions import db
from app.gateway.clients import platform_keys
from app.gateway.log import PendingLog
from app.gateway.models import GatewayEvent
from app.merchants.schemas import SLUG
from app.merchants.snapshots import MerchantSnapshot, merchant_snapshot
from app.payments.models import PaymentAttempt
from app.payments.refunds import apply_refund_notification
from app.payments.service import (
    SeenAttempt,
    already_applied,
    apply_locked,
    apply_transaction,
    lock_payment,
)
from wechat.errors import VerificationError, WeChatError
from wechat.notifications import parse_notification
from wechat.pay_v2 import parse_v2_notification

logger = logging.getLogger("hongli.notifications")
T = TypeVar("T")
_SLUG = cast(re.Pattern[str], SLUG.regex)


@dataclass(frozen=True)
class Answer:
    status: int
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status < 300


# What a decrypted resource's fields must be when present (refunds §4, transfer bills §6.1): one check
# before any domain code reads them, so a wrong type is refused like a wrong value.
_TEXT_FIELDS = frozenset(
    {
        "mchid", "sp_mchid", "sub_mchid", "appid", "out_trade_no", "transaction_id", "trade_state",
        "trade_type", "success_time", "out_refund_no", "refund_id", "refund_status", "out_bill_no",
        "transfer_bill_no", "state", "fail_reason", "create_time", "update_time",
    }
)  # fmt: skip
_AMOUNT_INTEGERS = frozenset({"total", "payer_total", "refund", "payer_refund", "discount_refund"})


def _malformed(resource: Mapping[str, Any]) -> str | None:
    """Why a verified resource cannot be read (a field of the wrong type), else None."""
    for name in _TEXT_FIELDS & resource.keys():
        if not isinstance(resource[name], str):
            return f"{name} is not a string"
    amount = resource.get("amount")
    if amount is None:
        return None
    if not isinstance(amount, dict):
        return "amount is not an object"
    for name in _AMOUNT_INTEGERS & amount.keys():
        if type(amount[name]) is not int:
            return f"amount.{name} is not an integer"
    if not isinstance(amount.get("currency", "CNY"), str):
        return "amount.currency is not a string"
    return None


def _merchant(slug: str) -> MerchantSnapshot | None:
    # A URL segment that cannot be a slug (NUL, 5,000 characters, …) is never looked up.
    return merchant_snapshot(slug) if _SLUG.match(slug) else None


def _order_of(merchant: MerchantSnapshot, out_trade_no: object) -> int | None:
    if not isinstance(out_trade_no, str) or not out_trade_no:
        return None
    return db.session.scalar(
        select(PaymentAttempt.order_id).where(
            PaymentAttempt.merchant_id == merchant.id, PaymentAttempt.out_trade_no == out_trade_no
        )
    )


def _log_and_read_attempt() -> TextualSelect:
    """One statement that writes a payment notification's gateway-log row, tied to the order of the
    attempt it names, and returns that attempt's order, status and amount (NULLs when unknown).

    A repeat of an applied payment then costs this one statement (plus BEGIN and COMMIT) instead of a
    locked read and an INSERT. The attempt is read in the statement's snapshot, unlocked; only PAID,
    which an attempt never leaves, is acted on without the lock. Scalar subqueries in VALUES and
    RETURNING: the same SQL on PostgreSQL and SQLite (≥ 3.35), a text statement compiled once.
    """
    events = cast(Table, GatewayEvent.__table__)
    attempts = cast(Table, PaymentAttempt.__table__)
    names = [c.name for c in events.columns if c.name != "id"]

    def attempt(name: str) -> str:
        return (
            f'(SELECT "{name}" FROM "{attempts.name}" '  # noqa: S608 - the model's own identifiers
            'WHERE "merchant_id" = :merchant_id AND "out_trade_no" = :out_trade_no)'
        )

    values = [attempt("order_id") if name == "order_id" else f":{name}" for name in names]
    quoted = ", ".join(f'"{name}"' for name in names)
    sql = (
        f'INSERT INTO "{events.name}" ({quoted}) '  # noqa: S608
        f"VALUES ({', '.join(values)}) "
        f'RETURNING "order_id", {attempt("status")} AS attempt_status, {attempt("amount")} AS amount'
    )
    binds = [bindparam(n, type_=events.c[n].type) for n in names if n != "order_id"]
    return (
        text(sql)
        .bindparams(*binds, bindparam("out_trade_no", type_=attempts.c.out_trade_no.type))
        .columns(
            column("order_id", events.c.order_id.type),
            column("attempt_status", attempts.c.status.type),
            column("amount", attempts.c.amount.type),
        )
    )


_LOG_AND_READ_ATTEMPT = _log_and_read_attempt()


def _log_payment(log: PendingLog, merchant_id: int, out_trade_no: object) -> SeenAttempt | None:
    """Write the verified payment notification ``log`` holds, tied to its order; the attempt it names."""
    [row] = log.rows()  # parse_notification reports exactly one exchange when it succeeds
    del row["order_id"]
    trade = out_trade_no if isinstance(out_trade_no, str) and out_trade_no else None
    params = row | {"merchant_id": merchant_id, "out_trade_no": trade}
    order_id, status, amount = db.session.execute(_LOG_AND_READ_ATTEMPT, params).one()
    return None if order_id is None else SeenAttempt(order_id, status, amount)


def _verified(
    merchant: MerchantSnapshot, log: PendingLog, parse: Callable[[MerchantSnapshot], T]
) -> tuple[MerchantSnapshot, T]:
    """``parse`` (verify, decrypt) against the snapshot; on failure reload it once — a rotated
    certificate, public key, APIv3 or v2 key is then seen at once — and try again. Raises WeChatError."""
    try:
        return merchant, parse(merchant)
    except WeChatError:
        fresh = merchant_snapshot(merchant.slug, reload=True) if merchant.reloadable else None
        if fresh is None or fresh.updated_at == merchant.updated_at:
            raise
    log.discard()
    return fresh, parse(fresh)


def handle_v3_notification(*, slug: str, headers: Mapping[str, str], body: bytes) -> Answer:
    """Verify, decrypt and apply one v3 notification for merchant ``slug``.

    A payment notification is logged first, by the statement that reads its attempt: a repeat of an
    applied payment ends there. Otherwise it is applied under the lock of its attempt and order;
    concurrent repeats queue there and find it applied.
    """
    merchant = _merchant(slug)
    if merchant is None:
        return Answer(404, "unknown merchant")
    log = PendingLog(merchant.id)
    try:
        merchant, notification = _verified(
            merchant,
            log,
            lambda m: parse_notification(
                headers, body, keys=platform_keys(m), apiv3_key=m.secrets.apiv3_key, hook=log
            ),
        )
    except WeChatError as exc:
        log.write()
        logger.warning("refused a notification for %s: %s", slug, exc.code)
        return Answer(401, "signature verification failed")
    resource = notification.resource
    if notification.event_type == "TRANSACTION.SUCCESS":
        seen = _log_payment(log, merchant.id, resource.get("out_trade_no"))
        if already_applied(merchant, resource, seen):
            return Answer(204)
        locked = lock_payment(merchant.id, resource.get("out_trade_no"))
        applied = apply_locked(merchant=merchant, resource=resource, source="notification", locked=locked)
        return Answer(204) if applied.ok else Answer(400, applied.reason)
    log.write(_order_of(merchant, resource.get("out_trade_no")))
    if notification.event_type in ("COUPON.USE", "COUPON.SEND"):
        # A merchant may point its coupon callbacks here rather than at /wechat/<slug>/coupons/notify.
        from app.coupons.redemption import apply_coupon_event

        used = apply_coupon_event(merchant=merchant, event_type=notification.event_type, resource=resource)
        return Answer(used.status, used.message)
    if malformed := _malformed(resource):
        # Signed by WeChat yet unreadable: change nothing and answer a failure (WeChat retries, the log
        # shows it). Payments need no such check: their refusals (terms_mismatch, …) read any type.
        logger.warning("refused a %s notification for %s: %s", notification.event_type, slug, malformed)
        return Answer(400, f"malformed resource: {malformed}")
    if notification.event_type.startswith("REFUND."):
        applied_refund = apply_refund_notification(
            merchant=merchant, event_type=notification.event_type, resource=resource
        )
        return Answer(204) if applied_refund else Answer(400, "unknown refund")
    if notification.event_type == "MCHTRANSFER.BILL.FINISHED":
        from app.payouts.service import on_transfer_bill_finished

        on_transfer_bill_finished(merchant_id=merchant.id, resource=resource)
        return Answer(204)
    # Other event types are acknowledged; their owners subscribe when they exist.
    logger.info("acknowledged %s for %s", notification.event_type, slug)
    return Answer(204)


def _v2_key(merchant: MerchantSnapshot) -> str:
    if not merchant.secrets.v2_api_key:
        raise VerificationError("no v2 key configured", code="V2_NOT_CONFIGURED", ambiguous=False)
    return merchant.secrets.v2_api_key


def handle_v2_notification(*, slug: str, body: bytes) -> tuple[bool, str]:
    """Verify and apply a legacy v2 payment notification; (success, message) for the XML reply."""
    merchant = _merchant(slug)
    if merchant is None:
        return False, "unknown merchant"
    log = PendingLog(merchant.id)
    try:
        merchant, notification = _verified(
            merchant, log, lambda m: parse_v2_notification(body, _v2_key(m), hook=log)
        )
    except WeChatError as exc:
        log.write()
        logger.warning("refused a v2 notification for %s: %s", slug, exc.code)
        return False, "sign check failed"
    log.write(_order_of(merchant, notification.fields.get("out_trade_no")))
    fields: dict[str, Any] = dict(notification.fields)
    if not notification.succeeded:
        return True, "OK"  # a failed payment changes nothing; acknowledge so WeChat stops
    raw_total = str(fields.get("total_fee", ""))
    # ASCII digits only (int() would read '١٢' as 12); 12 digits is far beyond any payment.
    if not (raw_total.isascii() and raw_total.isdigit()) or len(raw_total) > 12:
        return False, "bad total_fee"
    total = int(raw_total)
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
