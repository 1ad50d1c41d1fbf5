"""Coupon jobs: send a reserved voucher (its saved key), re-queue unconfirmed sends, expire coupons."""

from __future__ import annotations

from app.coupons import merchant_coupons
from app.coupons.redemption import expire_coupons as _expire
from app.coupons.service import deliver_coupon, resend_reserved
from app.extensions import db
from app.queue import enqueue_after_commit


def send_coupon(coupon_id: int) -> str | None:
    """Send coupon ``coupon_id`` if it is still reserved (at-least-once safe: WeChat replays the same key)."""
    status = deliver_coupon(coupon_id)
    return None if status is None else status.value


def resend_coupons() -> int:
    """Re-queue every voucher whose send was not confirmed (an unknown outcome, a lost job)."""
    ids = resend_reserved()
    for coupon_id in ids:
        enqueue_after_commit("jobs.coupons.send_coupon", coupon_id)
    db.session.commit()
    return len(ids)


def expire_coupons() -> int:
    """Expire coupons past their validity, releasing their reservations (merchant coupons are then
    deactivated at WeChat too)."""
    expired = _expire()
    merchant_coupons.deactivate_expired()
    db.session.commit()
    return expired


def report_merchant_coupon(coupon_id: int) -> bool:
    """Tell WeChat a merchant coupon was used on a paid order (its saved use_request_no)."""
    return merchant_coupons.report_use(coupon_id)


def return_merchant_coupon(coupon_id: int) -> str | None:
    """退券 after a full refund (its saved return_request_no); the coupon is the user's again."""
    status = merchant_coupons.return_coupon(coupon_id)
    return None if status is None else status.value


def deactivate_merchant_coupon(coupon_id: int, reason: str) -> bool:
    """使券失效 at WeChat for a revoked or expired merchant coupon (its saved deactivate_request_no)."""
    return merchant_coupons.deactivate_at_wechat(coupon_id, reason)
