"""Reading a stock's coupons a page at a time: newest first, keyset-paged on id, found by state, consumer or
a coupon's number (ours, WeChat's coupon id or the merchant coupon's code)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select

from app.coupons.models import Coupon, CouponStatus
from app.coupons.service import get_stock
from app.extensions import db


def find_coupons(
    *,
    merchant_id: int,
    stock_id: int,
    status: CouponStatus | None = None,
    consumer_id: int | None = None,
    number: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> tuple[list[Coupon], int | None]:
    """One page of the stock's coupons and the ``before`` of the next page (None on the last)."""
    get_stock(merchant_id=merchant_id, stock_id=stock_id)  # 404 for another merchant's stock
    query = select(Coupon).where(Coupon.merchant_id == merchant_id, Coupon.stock_id == stock_id)
    if status is not None:
        query = query.where(Coupon.status == status)
    if consumer_id is not None:
        query = query.where(Coupon.consumer_id == consumer_id)
    if number:
        matches: list[Any] = [Coupon.wechat_coupon_id == number, Coupon.out_request_no == number]
        if number.isdigit() and len(number) < 19:
            matches.append(Coupon.id == int(number))
        query = query.where(or_(*matches))
    if before is not None:
        query = query.where(Coupon.id < before)
    rows = list(db.session.scalars(query.order_by(Coupon.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)
