"""WeChat Pay coupons: our stocks, every coupon we issue, what WeChat said an order's coupons cut, and
which coupon products a merchant's account has (detected from WeChat's answers, never assumed).

A stock is ours first: its size, its money terms and the rates frozen from a two-way rule are decided
here; WeChat's stock (``wechat_stock_id``) is the instrument that carries it into the card pack. The
smaller of our size and WeChat's is the one that issues.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, IdPK, str_enum, utcnow
from app.core.money import Money


class CouponKind(StrEnum):
    """The WeChat Pay product behind a stock (product coupons, 商品券, would be a third)."""

    VOUCHER = "voucher"  # 代金券 (favor): sent by our server, applied by WeChat Pay at checkout
    MERCHANT_COUPON = "merchant_coupon"  # 商家券 (busifavor): our codes, redeemed by our pricing


class StockStatus(StrEnum):
    DRAFT = "draft"  # ours only: WeChat has not confirmed the stock yet (the create call is retried)
    CREATED = "created"  # WeChat has it, not activated
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


STOCK_TRANSITIONS: dict[StockStatus, frozenset[StockStatus]] = {
    StockStatus.DRAFT: frozenset({StockStatus.CREATED, StockStatus.RUNNING, StockStatus.STOPPED}),
    StockStatus.CREATED: frozenset({StockStatus.RUNNING, StockStatus.STOPPED}),
    StockStatus.RUNNING: frozenset({StockStatus.PAUSED, StockStatus.STOPPED}),
    StockStatus.PAUSED: frozenset({StockStatus.RUNNING, StockStatus.STOPPED}),
    StockStatus.STOPPED: frozenset(),
}


class CouponStatus(StrEnum):
    RESERVED = "reserved"  # worst case reserved, our key saved; WeChat has not confirmed it yet
    SENT = "sent"  # in the user's card pack (a voucher WeChat confirmed; a merchant coupon's code offered)
    CLAIMED = "claimed"  # a merchant coupon bound to the user by COUPON.SEND
    USED = "used"  # spent on an order: its cost and the two-way legs are booked
    EXPIRED = "expired"
    DEACTIVATED = "deactivated"
    FAILED = "failed"  # WeChat refused it for good: never in a card pack


# Terminal states release the coupon's reservation; USED paid out of it.
COUPON_TRANSITIONS: dict[CouponStatus, frozenset[CouponStatus]] = {
    # RESERVED → DEACTIVATED only for a merchant coupon whose code (ours) was never offered: a reserved
    # voucher's send may have landed at WeChat, and a voucher cannot be recalled there.
    CouponStatus.RESERVED: frozenset(
        {
            CouponStatus.SENT,
            CouponStatus.CLAIMED,
            CouponStatus.FAILED,
            CouponStatus.EXPIRED,
            CouponStatus.DEACTIVATED,
        }
    ),
    CouponStatus.SENT: frozenset(
        {CouponStatus.CLAIMED, CouponStatus.USED, CouponStatus.EXPIRED, CouponStatus.DEACTIVATED}
    ),
    CouponStatus.CLAIMED: frozenset({CouponStatus.USED, CouponStatus.EXPIRED, CouponStatus.DEACTIVATED}),
    CouponStatus.USED: frozenset({CouponStatus.CLAIMED}),  # a merchant coupon returned (退券) on refund
    CouponStatus.EXPIRED: frozenset(),
    CouponStatus.DEACTIVATED: frozenset(),
    CouponStatus.FAILED: frozenset(),
}
LIVE = (CouponStatus.RESERVED, CouponStatus.SENT, CouponStatus.CLAIMED)


class Channel(StrEnum):
    """How a coupon reached the consumer (metrics are per stock and channel)."""

    FOLLOW = "follow"
    AFTER_PAYMENT = "after_payment"
    PUSH = "push"  # a campaign push to a segment
    RULE = "rule"  # a two-way rule's reward
    PLUGIN = "plugin"  # the mini-program send-coupon plugin (merchant coupons)
    FIRST_VISIT = "first_visit"  # a new customer's first visit to the mini-program (no paid order yet)
    TASK = "task"  # a mini-program task done (browse / add to cart / share N times), checked by our events
    DIRECT = "direct"  # issued by staff to one consumer


class CouponStock(Base):
    """A coupon stock of one campaign, with the money terms every coupon of it freezes."""

    __tablename__ = "coupon_stocks"
    __table_args__ = (
        UniqueConstraint("merchant_id", "out_request_no"),
        UniqueConstraint("merchant_id", "kind", "wechat_stock_id"),
        Index("ix_coupon_stocks_merchant_status", "merchant_id", "status"),
    )

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    campaign_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("campaigns.id"), index=True)
    kind: Mapped[CouponKind] = mapped_column(str_enum(CouponKind))
    name: Mapped[str] = mapped_column(String(20))
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    face_value: Mapped[Money]
    min_spend: Mapped[Money]
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    max_coupons: Mapped[int]  # our size
    wechat_max_coupons: Mapped[int | None]  # WeChat's, when it is known to be smaller
    issued: Mapped[int] = mapped_column(default=0)  # coupons holding a place (the guard's counter)
    no_cash: Mapped[bool] = mapped_column(default=False)  # 免充值 (True) or 预充值
    wechat_stock_id: Mapped[str | None] = mapped_column(String(32))
    out_request_no: Mapped[str] = mapped_column(String(64))
    status: Mapped[StockStatus] = mapped_column(str_enum(StockStatus), default=StockStatus.DRAFT)
    # The two-way terms every coupon of this stock freezes (zero rates: a plain coupon, no legs).
    rule_version_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("campaign_rule_versions.id"))
    rule_id: Mapped[str | None] = mapped_column(String(64))
    issuer_rate_bp: Mapped[int] = mapped_column(default=0)
    buyer_rate_bp: Mapped[int] = mapped_column(default=0)
    max_order: Mapped[Money]
    issuer_cap: Mapped[Money | None]
    buyer_cap: Mapped[Money | None]
    worst_case_cost: Mapped[Money]
    scope: Mapped[list[str]] = mapped_column(JSON, default=list)  # merchant coupons: item categories
    # With the ``task`` channel: {"kind": view|cart|share, "count": N, "within_days": D}, what earns one.
    task: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    last_error: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def limit(self) -> int:
        """The size that issues: ours, or WeChat's when that is smaller."""
        if self.wechat_max_coupons is None:
            return self.max_coupons
        return min(self.max_coupons, self.wechat_max_coupons)


class Coupon(Base):
    """One coupon: reserved when issued, our idempotency key saved before WeChat hears of it."""

    __tablename__ = "coupons"
    __table_args__ = (
        UniqueConstraint("merchant_id", "issue_key"),
        UniqueConstraint("merchant_id", "out_request_no"),
        UniqueConstraint("merchant_id", "kind", "wechat_coupon_id"),
        Index("ix_coupons_stock_status", "stock_id", "status"),
        Index("ix_coupons_consumer", "consumer_id", "status"),
        Index("ix_coupons_status_valid_until", "status", "valid_until"),
    )

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    stock_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("coupon_stocks.id"))
    campaign_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("campaigns.id"))
    kind: Mapped[CouponKind] = mapped_column(str_enum(CouponKind))
    consumer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("consumers.id"))
    appid: Mapped[str] = mapped_column(String(32))
    openid: Mapped[str] = mapped_column(String(64))
    channel: Mapped[Channel] = mapped_column(str_enum(Channel))
    issue_key: Mapped[str] = mapped_column(String(120))
    out_request_no: Mapped[str] = mapped_column(String(64))
    # The voucher's coupon_id, or the merchant coupon's code (ours, saved before it is offered).
    wechat_coupon_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[CouponStatus] = mapped_column(str_enum(CouponStatus), default=CouponStatus.RESERVED)
    face_value: Mapped[Money]
    min_spend: Mapped[Money]
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    rule_version_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("campaign_rule_versions.id"))
    rule_id: Mapped[str | None] = mapped_column(String(64))
    issuer_rate_bp: Mapped[int] = mapped_column(default=0)
    buyer_rate_bp: Mapped[int] = mapped_column(default=0)
    max_order: Mapped[Money]
    issuer_cap: Mapped[Money | None]
    buyer_cap: Mapped[Money | None]
    reserved: Mapped[Money]  # what the campaign's reserve still holds for this coupon
    order_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("orders.id"), index=True)
    transaction_id: Mapped[str | None] = mapped_column(String(64), index=True)
    discount: Mapped[Money | None]  # what it cut from the order
    merchant_contribute: Mapped[Money | None]
    wechat_contribute: Mapped[Money | None]
    use_request_no: Mapped[str | None] = mapped_column(String(64))
    return_request_no: Mapped[str | None] = mapped_column(String(64))
    deactivate_request_no: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(255))
    sent_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    used_at: Mapped[datetime | None]
    booked_at: Mapped[datetime | None]  # the use's cost and legs booked (once: the guard's column)
    ended_at: Mapped[datetime | None]  # expired / deactivated / failed: the reservation released
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CouponPromotion(Base):
    """One line of a payment's ``promotion_detail[]``: which coupon cut how much, and who paid for it."""

    __tablename__ = "coupon_promotions"
    __table_args__ = (UniqueConstraint("order_id", "wechat_coupon_id"),)

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    order_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("orders.id"), index=True)
    coupon_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("coupons.id"))  # ours, if ours
    wechat_coupon_id: Mapped[str] = mapped_column(String(64))
    wechat_stock_id: Mapped[str | None] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(64))
    type: Mapped[str | None] = mapped_column(String(16))  # CASH (预充值) / NOCASH (免充值)
    amount: Mapped[Money]
    merchant_contribute: Mapped[Money]
    wechat_contribute: Mapped[Money]
    other_contribute: Mapped[Money]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CouponCapability(Base):
    """Whether a merchant's account has a coupon product, as WeChat last answered (``NO_AUTH`` → off)."""

    __tablename__ = "coupon_capabilities"
    __table_args__ = (UniqueConstraint("merchant_id", "kind"),)

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    kind: Mapped[CouponKind] = mapped_column(str_enum(CouponKind))
    enabled: Mapped[bool]
    reason: Mapped[str | None] = mapped_column(String(255))
    wechat_code: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    detected_at: Mapped[datetime] = mapped_column(default=utcnow)
