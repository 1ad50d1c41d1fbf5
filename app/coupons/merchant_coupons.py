"""Merchant coupons (商家券) in our own pricing: a claimed code is applied to an unpaid order like an in-app
red packet (minimum spend, scope, validity decided here), lowers what WeChat is asked to charge, is used
when the order is paid (cost and legs booked in the payment's transaction, ``coupons/use`` reported to
WeChat after commit with our ``use_request_no`` saved first), returned (退券) when the order is refunded
in full, and deactivated (使券失效) when it expires or is revoked. Each WeChat call keeps its saved key.
"""

from __future__ import annotations

import logging
from datetime import timedelta, timezone
from typing import Any

from sqlalchemy import and_, or_, select, update

from app.core.db import utcnow
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.guards import guarded_update
from app.core.money import Money
from app.coupons.issuance import BUYER_LEG_KEY
from app.coupons.models import Coupon, CouponKind, CouponStatus, CouponStock
from app.coupons.redemption import book_use
from app.coupons.service import coupons_client, end_coupon
from app.events.bus import Event
from app.extensions import db
from app.ledger.accounts import campaign_accounts
from app.ledger.models import EntryReason
from app.ledger.service import Overdraft, post_entry
from app.merchants.models import Merchant
from app.orders.models import Order, OrderStatus
from app.payments.discounts import Discount
from app.queue import enqueue_after_commit
from app.reviews.service import flag_for_review
from wechat.errors import WeChatError

logger = logging.getLogger("hongli.coupons")
CHINA = timezone(timedelta(hours=8))
USE_JOB = "jobs.coupons.report_merchant_coupon"


def _mine(*, merchant_id: int, consumer_id: int, coupon_id: int) -> Coupon:
    coupon = db.session.get(Coupon, coupon_id)
    if (
        coupon is None
        or coupon.merchant_id != merchant_id
        or coupon.consumer_id != consumer_id
        or coupon.kind is not CouponKind.MERCHANT_COUPON
    ):
        raise NotFound("unknown coupon", details={"coupon_id": coupon_id})
    return coupon


def apply_to_order(*, merchant_id: int, consumer_id: int, coupon_id: int, order_id: int) -> dict[str, Any]:
    """Hold a claimed merchant coupon for an unpaid order of the consumer, after our pricing accepts it:
    valid now, the order total at least its minimum, items within its scope. One coupon per order (a held
    one is let go); the guard is the conditional UPDATE (claimed, and free or already this order's)."""
    coupon = _mine(merchant_id=merchant_id, consumer_id=consumer_id, coupon_id=coupon_id)
    order = db.session.get(Order, order_id)
    if order is None or order.merchant_id != merchant_id or order.consumer_id != consumer_id:
        raise NotFound("unknown order", details={"order_id": order_id})
    if order.status is not OrderStatus.PENDING_PAYMENT:
        raise Conflict(f"this order is {order.status.value}", details={"status": order.status.value})
    stock = db.session.get(CouponStock, coupon.stock_id)
    assert stock is not None
    now = utcnow()
    if coupon.status is not CouponStatus.CLAIMED:
        raise Conflict(f"this coupon is {coupon.status.value}", details={"status": coupon.status.value})
    if not coupon.valid_from <= now < coupon.valid_until:
        raise Conflict(
            "this coupon is not valid now", details={"valid_until": coupon.valid_until.isoformat()}
        )
    if order.total < coupon.min_spend:
        raise InvalidInput(
            f"this coupon needs an order of at least {coupon.min_spend.fen} fen",
            details={"fields": {"coupon_id": ["below minimum spend"]}, "min_spend_fen": coupon.min_spend.fen},
        )
    if stock.scope:
        outside = sorted(
            {str(i.get("category")) for i in order.items if i.get("category") not in stock.scope}
        )
        if outside:
            raise InvalidInput(
                "this coupon does not cover every item of the order",
                details={"fields": {"coupon_id": ["outside its scope"]}, "categories": outside},
            )
    db.session.execute(
        update(Coupon)
        .where(Coupon.order_id == order.id, Coupon.status == CouponStatus.CLAIMED, Coupon.id != coupon.id)
        .values(order_id=None)
        .execution_options(synchronize_session=False)
    )
    if not guarded_update(
        Coupon,
        coupon.id,
        Coupon.status == CouponStatus.CLAIMED,
        or_(Coupon.order_id.is_(None), Coupon.order_id == order.id),
        order_id=order.id,
    ):
        raise Conflict("this coupon is being used for another order", details={"status": "held"})
    discount = min(coupon.face_value, order.total - Money(1))
    return {
        "coupon_id": coupon.id,
        "order_id": order.id,
        "total_fen": order.total.fen,
        "discount_fen": discount.fen,
        "payable_fen": (order.total - discount).fen,
    }


def held_discount(order: Order) -> Discount | None:
    """The payment seam: the discount of the merchant coupon held for ``order``, re-checked now."""
    coupon = db.session.scalar(
        select(Coupon).where(
            Coupon.order_id == order.id,
            Coupon.status == CouponStatus.CLAIMED,
            Coupon.kind == CouponKind.MERCHANT_COUPON,
        )
    )
    if coupon is None:
        return None
    now = utcnow()
    if not coupon.valid_from <= now < coupon.valid_until or order.total < coupon.min_spend:
        db.session.execute(update(Coupon).where(Coupon.id == coupon.id).values(order_id=None))
        raise Conflict(
            "the coupon applied to this order can no longer be used", details={"coupon_id": coupon.id}
        )
    return Discount(min(coupon.face_value, order.total - Money(1)), None)


def on_order_paid(event: Event) -> None:
    """A paid order's held merchant coupon is used: booked now (cost = the discount the payment carried),
    reported to WeChat after commit. A payment that carried no coupon discount lets the hold go."""
    discount = int(event.payload.get("discount_fen") or 0)
    held = db.session.scalars(
        select(Coupon).where(
            Coupon.order_id == event.subject_id,
            Coupon.status == CouponStatus.CLAIMED,
            Coupon.kind == CouponKind.MERCHANT_COUPON,
        )
    ).all()
    for coupon in held:
        if discount <= 0 or event.payload.get("red_packet_id"):
            guarded_update(Coupon, coupon.id, Coupon.status == CouponStatus.CLAIMED, order_id=None)
            continue
        merchant = db.session.get(Merchant, coupon.merchant_id)
        assert merchant is not None
        if not guarded_update(
            Coupon,
            coupon.id,
            Coupon.status == CouponStatus.CLAIMED,
            Coupon.order_id == event.subject_id,
            status=CouponStatus.USED,
            used_at=utcnow(),
            transaction_id=event.payload.get("transaction_id"),
            discount=Money(discount),
            merchant_contribute=Money(discount),
            wechat_contribute=Money(0),
            use_request_no=f"{merchant.mchid}U{utcnow():%Y%m%d}{coupon.id:012d}",
        ):
            continue
        book_use(coupon.id)
        enqueue_after_commit(USE_JOB, coupon.id)
        discount = 0  # one coupon per order


def on_order_closed(event: Event) -> None:
    """An order closed unpaid lets its held coupon go."""
    db.session.execute(
        update(Coupon)
        .where(Coupon.order_id == event.subject_id, Coupon.status == CouponStatus.CLAIMED)
        .values(order_id=None)
        .execution_options(synchronize_session=False)
    )


def report_use(coupon_id: int) -> bool:
    """Tell WeChat a merchant coupon was used (核销), with its saved ``use_request_no``. A refusal for good
    (used already, expired at WeChat) goes to review: the order was priced with it and is paid."""
    coupon = db.session.get(Coupon, coupon_id)
    if coupon is None or coupon.status is not CouponStatus.USED or coupon.use_request_no is None:
        return False
    stock = db.session.get(CouponStock, coupon.stock_id)
    merchant = db.session.get(Merchant, coupon.merchant_id)
    assert stock is not None and merchant is not None and stock.wechat_stock_id and coupon.wechat_coupon_id
    try:
        coupons_client(merchant).use_merchant_coupon(
            coupon_code=coupon.wechat_coupon_id,
            stock_id=stock.wechat_stock_id,
            appid=coupon.appid,
            openid=coupon.openid,
            use_time=(coupon.used_at or utcnow()).astimezone(CHINA).isoformat(timespec="seconds"),
            use_request_no=coupon.use_request_no,
        )
    except WeChatError as exc:
        coupon.last_error = f"{exc.code}: {exc.message}"[:255]
        if exc.final:
            flag_for_review(
                merchant_id=coupon.merchant_id,
                kind="coupon_use_refused",
                reason="WeChat refused the use of a merchant coupon an order was paid with",
                reference=f"coupon:{coupon.id}",
                details={"coupon_id": coupon.id, "order_id": coupon.order_id, "wechat_code": exc.code},
            )
        db.session.commit()
        if exc.final:
            return False
        raise
    coupon.last_error = None
    db.session.commit()
    return True


def on_refund_succeeded(event: Event) -> None:
    """An order refunded in full gives its merchant coupon back (退券, after commit), and takes back a
    merchant coupon that paid its buyer's two-way leg while it is unused (使券失效; a voucher cannot be
    recalled at WeChat: it stays with the buyer, and costs only if used)."""
    if int(event.payload["refunded_total_fen"]) < int(event.payload["paid_fen"]):
        return
    for leg_coupon in db.session.scalars(
        select(Coupon).where(
            Coupon.merchant_id == event.merchant_id,
            Coupon.issue_key.like(f"{BUYER_LEG_KEY}{int(event.payload['order_id'])}:%"),
            Coupon.kind == CouponKind.MERCHANT_COUPON,
            Coupon.status.in_([CouponStatus.RESERVED, CouponStatus.SENT, CouponStatus.CLAIMED]),
        )
    ):
        if end_coupon(leg_coupon, CouponStatus.DEACTIVATED, key=f"coupon-revoke:{leg_coupon.id}"):
            _schedule_deactivation(leg_coupon, "the order that earned it was refunded")
    for coupon_id in db.session.scalars(
        select(Coupon.id).where(
            Coupon.order_id == int(event.payload["order_id"]),
            Coupon.kind == CouponKind.MERCHANT_COUPON,
            Coupon.status == CouponStatus.USED,
            Coupon.return_request_no.is_(None),
        )
    ):
        merchant_id = event.merchant_id
        mchid = db.session.scalar(select(Merchant.mchid).where(Merchant.id == merchant_id))
        if guarded_update(
            Coupon,
            coupon_id,
            Coupon.return_request_no.is_(None),
            return_request_no=f"{mchid}R{utcnow():%Y%m%d}{coupon_id:012d}",
        ):
            enqueue_after_commit("jobs.coupons.return_merchant_coupon", coupon_id)


def return_coupon(coupon_id: int) -> CouponStatus | None:
    """退券 at WeChat (saved ``return_request_no``), then the coupon is the user's again: claimed, its worst
    case reserved anew — or, when the budget cannot cover it, deactivated at WeChat (never overspent)."""
    coupon = db.session.get(Coupon, coupon_id)
    if coupon is None or coupon.status is not CouponStatus.USED or coupon.return_request_no is None:
        return None if coupon is None else coupon.status
    stock = db.session.get(CouponStock, coupon.stock_id)
    merchant = db.session.get(Merchant, coupon.merchant_id)
    assert stock is not None and merchant is not None and stock.wechat_stock_id and coupon.wechat_coupon_id
    client = coupons_client(merchant)
    client.return_merchant_coupon(
        coupon_code=coupon.wechat_coupon_id,
        stock_id=stock.wechat_stock_id,
        return_request_no=coupon.return_request_no,
    )
    worst = stock.worst_case_cost if coupon.rule_version_id == stock.rule_version_id else coupon.face_value
    accounts = campaign_accounts(coupon.merchant_id, coupon.campaign_id)
    generation = coupon.return_request_no
    try:
        with db.session.begin_nested():
            if not guarded_update(
                Coupon,
                coupon.id,
                Coupon.status == CouponStatus.USED,
                Coupon.return_request_no == generation,
                status=CouponStatus.CLAIMED,
                order_id=None,
                booked_at=None,
                used_at=None,
                transaction_id=None,
                discount=None,
                merchant_contribute=None,
                wechat_contribute=None,
                use_request_no=None,
                return_request_no=None,
                reserved=worst,
            ):
                return coupon.status
            post_entry(
                key=f"coupon-rereserve:{coupon.id}:{generation}",
                reason=EntryReason.RESERVE,
                cause_type="coupon",
                cause_id=str(coupon.id),
                lines=[(accounts.budget, -worst), (accounts.reserved, worst)],
                merchant_id=coupon.merchant_id,
                rule_version_id=coupon.rule_version_id,
                memo=f"reserve worst case of returned coupon {coupon.id}",
            )
    except Overdraft:
        # The budget cannot hold it again: the returned code is switched off at WeChat instead.
        guarded_update(Coupon, coupon.id, Coupon.status == CouponStatus.USED, status=CouponStatus.DEACTIVATED,
                       ended_at=utcnow(), deactivate_request_no=f"{merchant.mchid}D{coupon.id:012d}")  # fmt: skip
        db.session.commit()
        deactivate_at_wechat(coupon.id, reason="returned; the campaign budget is spent")
        return CouponStatus.DEACTIVATED
    db.session.commit()
    return CouponStatus.CLAIMED


def revoke(*, merchant_id: int, coupon_id: int, reason: str) -> Coupon:
    """Revoke a live merchant coupon: released here at once, deactivated (使券失效) at WeChat after commit."""
    coupon = db.session.get(Coupon, coupon_id)
    if coupon is None or coupon.merchant_id != merchant_id:
        raise NotFound("unknown coupon", details={"coupon_id": coupon_id})
    if coupon.kind is not CouponKind.MERCHANT_COUPON:
        raise Conflict("a voucher cannot be deactivated; stop its stock", details={"kind": coupon.kind.value})
    if not end_coupon(coupon, CouponStatus.DEACTIVATED, key=f"coupon-revoke:{coupon.id}"):
        raise Conflict(f"this coupon is {coupon.status.value}", details={"status": coupon.status.value})
    _schedule_deactivation(coupon, reason)
    db.session.refresh(coupon)
    return coupon


def _schedule_deactivation(coupon: Coupon, reason: str) -> None:
    merchant = db.session.get(Merchant, coupon.merchant_id)
    assert merchant is not None
    guarded_update(
        Coupon, coupon.id, Coupon.deactivate_request_no.is_(None),
        deactivate_request_no=f"{merchant.mchid}D{coupon.id:012d}", last_error=None,
    )  # fmt: skip
    if coupon.wechat_coupon_id and coupon.claimed_at is not None:
        enqueue_after_commit("jobs.coupons.deactivate_merchant_coupon", coupon.id, reason)


def deactivate_at_wechat(coupon_id: int, reason: str) -> bool:
    """使券失效 at WeChat with the saved ``deactivate_request_no`` (a code never claimed has nothing to do)."""
    coupon = db.session.get(Coupon, coupon_id)
    if coupon is None or coupon.deactivate_request_no is None or coupon.claimed_at is None:
        return False
    stock = db.session.get(CouponStock, coupon.stock_id)
    merchant = db.session.get(Merchant, coupon.merchant_id)
    assert stock is not None and merchant is not None and stock.wechat_stock_id and coupon.wechat_coupon_id
    try:
        coupons_client(merchant).deactivate_merchant_coupon(
            coupon_code=coupon.wechat_coupon_id,
            stock_id=stock.wechat_stock_id,
            deactivate_request_no=coupon.deactivate_request_no,
            reason=reason,
        )
    except WeChatError as exc:
        coupon.last_error = f"{exc.code}: {exc.message}"[:255]
        db.session.commit()
        if exc.final:
            return False
        raise
    db.session.commit()
    return True


def deactivate_expired(limit: int = 200) -> int:
    """Merchant coupons that expired here (our validity can end before WeChat's stock): deactivated at
    WeChat too, so the card pack agrees."""
    ids = db.session.scalars(
        select(Coupon.id)
        .where(
            Coupon.kind == CouponKind.MERCHANT_COUPON,
            Coupon.status == CouponStatus.EXPIRED,
            Coupon.claimed_at.is_not(None),
            and_(Coupon.deactivate_request_no.is_(None)),
        )
        .limit(limit)
    ).all()
    for coupon_id in ids:
        coupon = db.session.get(Coupon, coupon_id)
        if coupon is not None:
            _schedule_deactivation(coupon, "expired")
    return len(ids)
