"""What WeChat tells us about coupons, and what a used coupon books.

* ``/wechat/<merchant>/coupons/notify`` receives ``COUPON.USE`` (a voucher spent at checkout) and
  ``COUPON.SEND`` (a user claimed one of our merchant-coupon codes), verified and decrypted exactly like
  payment notifications (§3.3, §3.5): a forged, stale or probing request is refused (401), an unknown
  coupon or another merchant's stock is acknowledged and ignored (WeChat would retry a refusal forever),
  a repeat changes nothing. Every one is in the gateway log.
* A payment's ``promotion_detail[]`` says which coupon cut how much, and who paid for it.
* A voucher's use is booked when both facts are in, whichever comes second: the payment (the order is
  paid, the coupon's order and contribution known) and ``COUPON.USE``. Both write the coupon's row with a
  conditional UPDATE, so on PostgreSQL the second waits for the first and reads what it wrote; the booking
  itself is once (the coupon's ``booked_at``, then the grants' unique ``(coupon_id, beneficiary)``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import select, update

from app.core.db import utcnow
from app.core.guards import guarded_update
from app.core.money import Money
from app.coupons.issuance import SEND_JOB
from app.coupons.models import LIVE, Coupon, CouponKind, CouponPromotion, CouponStatus, CouponStock
from app.coupons.service import end_coupon
from app.events.bus import Event
from app.extensions import db
from app.gateway.clients import platform_keys
from app.gateway.log import PendingLog
from app.ledger.accounts import campaign_accounts
from app.ledger.models import EntryReason
from app.ledger.service import post_entry
from app.merchants.schemas import SLUG
from app.merchants.snapshots import MerchantSnapshot, merchant_snapshot
from app.orders.models import Order, OrderStatus
from app.queue import enqueue_after_commit
from app.rebates.service import CouponUse, book_coupon_use
from wechat.errors import WeChatError
from wechat.notifications import Notification, parse_notification

logger = logging.getLogger("hongli.coupons")
UNCLAIMED_USE_GRACE = timedelta(days=7)
_SLUG = cast(re.Pattern[str], SLUG.regex)


@dataclass(frozen=True)
class Answer:
    status: int
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status < 300


# ---------------------------------------------------------------- the notification endpoint


def handle_coupon_notification(*, slug: str, headers: Mapping[str, str], body: bytes) -> Answer:
    """Verify, decrypt and apply one coupon notification for merchant ``slug``."""
    if not _SLUG.fullmatch(slug):
        return Answer(404, "unknown merchant")
    merchant = merchant_snapshot(slug)
    if merchant is None:
        return Answer(404, "unknown merchant")
    log = PendingLog(merchant.id)
    try:
        notification = _verified(merchant, log, headers, body)
    except WeChatError as exc:
        log.write()
        logger.warning("refused a coupon notification for %s: %s", slug, exc.code)
        return Answer(401, "signature verification failed")
    log.write()
    return apply_coupon_event(
        merchant=merchant, event_type=notification.event_type, resource=notification.resource
    )


def apply_coupon_event(*, merchant: MerchantSnapshot, event_type: str, resource: Mapping[str, Any]) -> Answer:
    """Apply a verified coupon notification (also when a merchant pointed its coupon callbacks at the
    payment notification URL)."""
    original = str(resource.get("event_type") or "")
    if event_type == "COUPON.SEND" or original == "EVENT_TYPE_BUSICOUPON_SEND":
        return apply_merchant_coupon_send(merchant=merchant, resource=resource)
    # §7a.5 DISAGREE: a partner page shows TRANSACTION.SUCCESS for a coupon use; the coupon shape decides.
    if event_type == "COUPON.USE" or (isinstance(resource.get("coupon_id"), str) and "stock_id" in resource):
        return apply_voucher_use(merchant=merchant, resource=resource)
    logger.info("acknowledged %s for %s", event_type, merchant.slug)
    return Answer(204)


def _verified(
    merchant: MerchantSnapshot, log: PendingLog, headers: Mapping[str, str], body: bytes
) -> Notification:
    def parse(m: MerchantSnapshot) -> Notification:
        return parse_notification(
            headers, body, keys=platform_keys(m), apiv3_key=m.secrets.apiv3_key, hook=log
        )

    try:
        return parse(merchant)
    except WeChatError:
        # A rotated certificate or key is seen at once: reload the merchant once and try again.
        fresh = merchant_snapshot(merchant.slug, reload=True) if merchant.reloadable else None
        if fresh is None or fresh.updated_at == merchant.updated_at:
            raise
    log.discard()
    return parse(fresh)


def _text(resource: Mapping[str, Any], *path: str) -> str | None:
    value: Any = resource
    for name in path:
        value = value.get(name) if isinstance(value, Mapping) else None
    return value if isinstance(value, str) and value and len(value) <= 128 else None


def _ignored(merchant: MerchantSnapshot, what: str, resource: Mapping[str, Any]) -> Answer:
    # Acknowledged (WeChat retries anything else for hours) and changed nothing; the log says why.
    logger.warning(
        "ignored a coupon notification for %s: %s (%s)",
        merchant.slug,
        what,
        {k: resource.get(k) for k in ("stock_id", "coupon_id", "coupon_code")},
    )
    return Answer(204, what)


# ---------------------------------------------------------------- vouchers: COUPON.USE


def _not_known_yet(merchant: MerchantSnapshot, stock_id: str, resource: Mapping[str, Any]) -> Answer | None:
    """A use of a voucher we do not know, of one of our stocks holding sends whose outcome we do not know
    (a timeout while WeChat delivered): it may be one of them. Re-send them now (the same keys: WeChat
    answers with the coupon id it gave) and ask WeChat to deliver the use again later (503; COUPON.USE is
    retried every minute, 9 times), so the use is booked once its coupon is known. None otherwise."""
    pending = db.session.scalars(
        select(Coupon.id)
        .join(CouponStock, CouponStock.id == Coupon.stock_id)
        .where(
            Coupon.merchant_id == merchant.id,
            Coupon.kind == CouponKind.VOUCHER,
            Coupon.status == CouponStatus.RESERVED,
            CouponStock.wechat_stock_id == stock_id,
        )
        .order_by(Coupon.id)
        .limit(50)
    ).all()
    if not pending:
        return None
    for coupon_id in pending:
        enqueue_after_commit(SEND_JOB, coupon_id)
    logger.info(
        "COUPON.USE of unknown voucher %s for %s: %d send(s) of stock %s unconfirmed, re-sent; WeChat retries",
        resource.get("coupon_id"),
        merchant.slug,
        len(pending),
        stock_id,
    )
    return Answer(503, "coupon not known yet: retry later")


def apply_voucher_use(*, merchant: MerchantSnapshot, resource: Mapping[str, Any]) -> Answer:
    """A voucher was spent: ``sent`` → ``used`` once, then booked if its payment is in."""
    coupon_id, stock_id = _text(resource, "coupon_id"), _text(resource, "stock_id")
    transaction_id = _text(resource, "consume_information", "transaction_id")
    creator = _text(resource, "stock_creator_mchid")
    if coupon_id is None or stock_id is None:
        return _ignored(merchant, "no coupon_id / stock_id", resource)
    found = db.session.execute(
        select(Coupon.id, Coupon.face_value, CouponStock.wechat_stock_id)
        .join(CouponStock, CouponStock.id == Coupon.stock_id)
        .where(
            Coupon.merchant_id == merchant.id,
            Coupon.kind == CouponKind.VOUCHER,
            Coupon.wechat_coupon_id == coupon_id,
        )
    ).first()
    if found is None:
        return _not_known_yet(merchant, stock_id, resource) or _ignored(merchant, "unknown coupon", resource)
    ours, face_value, wechat_stock_id = found
    if wechat_stock_id != stock_id or (creator is not None and creator != merchant.mchid):
        return _ignored(merchant, "coupon of another stock or merchant", resource)
    used_at = _time(_text(resource, "consume_information", "consume_time")) or utcnow()
    db.session.flush()
    # The conditional UPDATE that decides (and, on PostgreSQL, queues behind the payment's): RETURNING
    # tells whether the payment side has already named the order.
    row = db.session.execute(
        update(Coupon)
        .where(Coupon.id == ours, Coupon.status.in_([CouponStatus.SENT, CouponStatus.RESERVED]))
        .values(status=CouponStatus.USED, used_at=used_at, transaction_id=transaction_id)
        .returning(Coupon.order_id)
        .execution_options(synchronize_session=False)
    ).first()
    _forget(ours)
    if row is None:
        return Answer(204, "a repeat")  # already used: WeChat's retry or duplicate
    order_id = row[0]
    if order_id is None and transaction_id is not None:
        order_id = _order_paid_with(merchant.id, transaction_id, ours, face_value)
    if order_id is not None:
        book_use(ours)
    return Answer(204)


def _forget(coupon_id: int) -> None:
    # A Core UPDATE changed the row: a copy in this session must be read again.
    loaded = db.session.identity_map.get(db.session.identity_key(Coupon, coupon_id))
    if loaded is not None:
        db.session.expire(loaded)


def _time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _order_paid_with(merchant_id: int, transaction_id: str, coupon_id: int, face_value: Money) -> int | None:
    """The paid order of ``transaction_id`` when its payment named no coupon (no promotion_detail): the
    coupon's order then, its face value what it cut (a normal voucher cuts all of it)."""
    order_id = db.session.scalar(
        select(Order.id).where(
            Order.merchant_id == merchant_id,
            Order.transaction_id == transaction_id,
            Order.status == OrderStatus.PAID,
        )
    )
    if order_id is None:
        return None
    if guarded_update(
        Coupon,
        coupon_id,
        Coupon.order_id.is_(None),
        order_id=order_id,
        discount=face_value,
        merchant_contribute=face_value,
        wechat_contribute=Money(0),
    ):
        return order_id
    return db.session.scalar(select(Coupon.order_id).where(Coupon.id == coupon_id))


# ---------------------------------------------------------------- merchant coupons: COUPON.SEND


def apply_merchant_coupon_send(*, merchant: MerchantSnapshot, resource: Mapping[str, Any]) -> Answer:
    """A user claimed one of our codes: ``reserved`` → ``claimed`` once, if it is the code we offered that
    user (same stock, same openid). Anything else is ignored and logged."""
    code, stock_id, openid = (
        _text(resource, "coupon_code"),
        _text(resource, "stock_id"),
        _text(resource, "openid"),
    )
    if code is None or stock_id is None or openid is None:
        return _ignored(merchant, "no coupon_code / stock_id / openid", resource)
    coupon = db.session.scalar(
        select(Coupon).where(
            Coupon.merchant_id == merchant.id,
            Coupon.kind == CouponKind.MERCHANT_COUPON,
            Coupon.wechat_coupon_id == code,
        )
    )
    stock = db.session.get(CouponStock, coupon.stock_id) if coupon is not None else None
    if coupon is None or stock is None:
        return _ignored(merchant, "unknown coupon code", resource)
    if stock.wechat_stock_id != stock_id:
        return _ignored(merchant, "code of another stock", resource)
    if coupon.openid != openid:
        return _ignored(merchant, "code offered to another user", resource)
    claimed_at = _time(_text(resource, "send_time")) or utcnow()
    if not guarded_update(
        Coupon,
        coupon.id,
        Coupon.status.in_([CouponStatus.RESERVED, CouponStatus.SENT]),
        status=CouponStatus.CLAIMED,
        claimed_at=claimed_at,
    ):
        return Answer(204, "a repeat")
    return Answer(204)


# ---------------------------------------------------------------- the payment's promotion_detail


def on_order_paid(event: Event) -> None:
    """``order.paid``: record the payment's ``promotion_detail[]`` and book each of our vouchers it names
    whose ``COUPON.USE`` is already in (otherwise that notification books it)."""
    details = event.payload.get("promotion_detail") or []
    order_id = event.subject_id
    named: set[int] = set()
    for line in details if isinstance(details, list) else []:
        coupon_id = _record_promotion(event.merchant_id, order_id, line)
        if coupon_id is not None:
            named.add(coupon_id)
    transaction_id = event.payload.get("transaction_id")
    payer_total = event.payload.get("payer_total_fen")
    # The payer paid what we asked: WeChat applied no coupon, so none can be waiting for this payment.
    untouched = isinstance(payer_total, int) and payer_total >= int(event.payload.get("paid_fen") or 0)
    if transaction_id and not untouched:
        # A payment that named no coupon (an older notification, a v2 one): vouchers used with it.
        for coupon in db.session.scalars(
            select(Coupon).where(
                Coupon.merchant_id == event.merchant_id,
                Coupon.transaction_id == transaction_id,
                Coupon.status == CouponStatus.USED,
                Coupon.order_id.is_(None),
            )
        ):
            if coupon.id not in named and _order_paid_with(
                event.merchant_id, transaction_id, coupon.id, coupon.face_value
            ):
                book_use(coupon.id)


def _record_promotion(merchant_id: int, order_id: int, line: Any) -> int | None:
    if not isinstance(line, Mapping):
        return None
    wechat_coupon_id = _text(line, "coupon_id")
    amount = _fen(line.get("amount"))
    if wechat_coupon_id is None or amount is None:
        return None
    merchant_part = _fen(line.get("merchant_contribute")) or 0
    wechat_part = _fen(line.get("wechatpay_contribute")) or 0
    exists = db.session.scalar(
        select(CouponPromotion.id).where(
            CouponPromotion.order_id == order_id, CouponPromotion.wechat_coupon_id == wechat_coupon_id
        )
    )
    coupon = db.session.scalar(
        select(Coupon).where(
            Coupon.merchant_id == merchant_id,
            Coupon.kind == CouponKind.VOUCHER,
            Coupon.wechat_coupon_id == wechat_coupon_id,
        )
    )
    if exists is None:
        db.session.add(
            CouponPromotion(
                merchant_id=merchant_id,
                order_id=order_id,
                coupon_id=None if coupon is None else coupon.id,
                wechat_coupon_id=wechat_coupon_id,
                wechat_stock_id=_text(line, "stock_id"),
                name=(_text(line, "name") or "")[:64] or None,
                type=(_text(line, "type") or "")[:16] or None,
                amount=Money(amount),
                merchant_contribute=Money(merchant_part),
                wechat_contribute=Money(wechat_part),
                other_contribute=Money(_fen(line.get("other_contribute")) or 0),
            )
        )
    if coupon is None:
        return None
    db.session.flush()
    row = db.session.execute(
        update(Coupon)
        .where(Coupon.id == coupon.id, Coupon.order_id.is_(None))
        .values(
            order_id=order_id,
            discount=Money(amount),
            merchant_contribute=Money(merchant_part),
            wechat_contribute=Money(wechat_part),
        )
        .returning(Coupon.status)
        .execution_options(synchronize_session=False)
    ).first()
    db.session.expire(coupon)
    if row is not None and row[0] in (CouponStatus.USED, CouponStatus.USED.value):
        book_use(coupon.id)
    return coupon.id


def _fen(value: Any) -> int | None:
    return value if type(value) is int and 0 <= value < 10**12 else None


# ---------------------------------------------------------------- booking a use


def book_use(coupon_id: int) -> bool:
    """Book a used coupon's cost and legs once (its ``booked_at``), if its order is paid.

    The order is read first: a paid order stays paid, so once it is, the guarded UPDATE that marks the
    coupon booked (from the reservation as read) is followed by the booking itself, in the same
    transaction, without a savepoint."""
    db.session.flush()
    coupon = db.session.scalar(
        select(Coupon).where(Coupon.id == coupon_id).execution_options(populate_existing=True)
    )
    if coupon is None or coupon.status is not CouponStatus.USED or coupon.order_id is None:
        return False
    if coupon.booked_at is not None:
        return False
    if db.session.scalar(select(Order.status).where(Order.id == coupon.order_id)) is not OrderStatus.PAID:
        return False
    use = CouponUse(
        id=coupon.id,
        merchant_id=coupon.merchant_id,
        campaign_id=coupon.campaign_id,
        rule_version_id=coupon.rule_version_id or 0,
        rule_id=coupon.rule_id or f"coupon-stock-{coupon.stock_id}",
        face_value=coupon.face_value,
        min_spend=coupon.min_spend,
        issuer_rate_bp=coupon.issuer_rate_bp,
        buyer_rate_bp=coupon.buyer_rate_bp,
        max_order=coupon.max_order,
        issuer_cap=coupon.issuer_cap,
        buyer_cap=coupon.buyer_cap,
        reserved=coupon.reserved,
        cost=coupon.merchant_contribute if coupon.merchant_contribute is not None else coupon.face_value,
    )
    order_id = coupon.order_id
    # The guard: booked once, from the reservation as read.
    if not guarded_update(
        Coupon,
        coupon.id,
        Coupon.booked_at.is_(None),
        Coupon.status == CouponStatus.USED,
        Coupon.reserved == coupon.reserved,
        booked_at=utcnow(),
        reserved=Money(0),
    ):
        return False
    if not book_coupon_use(use, order_id):
        raise RuntimeError(f"order {order_id} was paid and is not")  # a paid order never stops being paid
    logger.info("coupon %s used on order %s: booked", coupon.id, order_id)
    return True


# ---------------------------------------------------------------- expiry


def expire_coupons(now: datetime | None = None, limit: int = 500) -> int:
    """Live coupons past their validity end; their reservations go back to the campaign budgets. A voucher
    used on a payment Hongli never learnt of (no order named a week after its validity) lets its
    reservation go too: it stays ``used``, and a payment arriving later books nothing more than it holds."""
    now = now or utcnow()
    ids = db.session.scalars(
        select(Coupon.id)
        .where(Coupon.status.in_(LIVE), Coupon.valid_until <= now)
        .order_by(Coupon.id)
        .limit(limit)
    ).all()
    expired = 0
    for coupon_id in ids:
        coupon = db.session.get(Coupon, coupon_id)
        if coupon is not None and end_coupon(coupon, CouponStatus.EXPIRED, key=f"coupon-expire:{coupon_id}"):
            expired += 1
    for coupon_id, held in db.session.execute(
        select(Coupon.id, Coupon.reserved)
        .where(
            Coupon.status == CouponStatus.USED,
            Coupon.booked_at.is_(None),
            Coupon.order_id.is_(None),
            Coupon.valid_until <= now - UNCLAIMED_USE_GRACE,
            Coupon.reserved > Money(0),
        )
        .limit(limit)
    ).all():
        if guarded_update(
            Coupon, coupon_id, Coupon.booked_at.is_(None), Coupon.reserved == held, reserved=Money(0)
        ):
            coupon = db.session.get(Coupon, coupon_id)
            assert coupon is not None
            accounts = campaign_accounts(coupon.merchant_id, coupon.campaign_id)
            post_entry(
                key=f"coupon-unclaimed-use:{coupon_id}",
                reason=EntryReason.RELEASE,
                cause_type="coupon",
                cause_id=str(coupon_id),
                lines=[(accounts.reserved, -held), (accounts.budget, held)],
                merchant_id=coupon.merchant_id,
                rule_version_id=coupon.rule_version_id,
                memo=f"release reservation of coupon {coupon_id}: used on a payment never seen",
            )
    return expired
