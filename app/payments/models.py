from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, IdPK, str_enum, utcnow
from app.core.money import Money


class AttemptStatus(StrEnum):
    ACTIVE = "active"  # prepay created (or being created); the user may pay it
    SUPERSEDED = "superseded"  # replaced by an attempt with other terms; closed at WeChat
    PAID = "paid"
    CLOSED = "closed"


class PaymentAttempt(Base):
    """One JSAPI order at WeChat. ``out_trade_no`` derives from the row id and never changes."""

    __tablename__ = "payment_attempts"

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    order_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("orders.id"), index=True)
    out_trade_no: Mapped[str] = mapped_column(String(32), unique=True)
    appid: Mapped[str] = mapped_column(String(32))
    payer_openid: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Money]
    discount: Mapped[Money] = mapped_column(default=Money(0))
    red_packet_id: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[AttemptStatus] = mapped_column(str_enum(AttemptStatus), default=AttemptStatus.ACTIVE)
    prepay_id: Mapped[str | None] = mapped_column(String(64))
    # The exact wx.requestPayment parameters handed out, so asking again returns the same ones.
    payment_params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RefundStatus(StrEnum):
    REQUESTED = "requested"  # saved; not yet accepted by WeChat (submission retried with the same number)
    PROCESSING = "processing"  # WeChat accepted it
    SUCCEEDED = "succeeded"
    ABNORMAL = "abnormal"  # WeChat could not return the money (e.g. closed account): needs a person
    CLOSED = "closed"  # WeChat closed it; the money was not returned
    FAILED = "failed"  # WeChat refused the request for good


REFUND_TRANSITIONS: dict[RefundStatus, frozenset[RefundStatus]] = {
    RefundStatus.REQUESTED: frozenset(
        {
            RefundStatus.PROCESSING,
            RefundStatus.SUCCEEDED,
            RefundStatus.ABNORMAL,
            RefundStatus.CLOSED,
            RefundStatus.FAILED,
        }
    ),
    RefundStatus.PROCESSING: frozenset({RefundStatus.SUCCEEDED, RefundStatus.ABNORMAL, RefundStatus.CLOSED}),
    RefundStatus.ABNORMAL: frozenset({RefundStatus.SUCCEEDED, RefundStatus.CLOSED}),
    RefundStatus.SUCCEEDED: frozenset(),
    RefundStatus.CLOSED: frozenset(),
    RefundStatus.FAILED: frozenset(),
}


class Refund(Base):
    """A refund the shop asked for. ``out_refund_no`` is the shop's key; ``wechat_refund_no`` ours."""

    __tablename__ = "refunds"
    __table_args__ = (UniqueConstraint("merchant_id", "out_refund_no"),)

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    order_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("orders.id"), index=True)
    out_refund_no: Mapped[str] = mapped_column(String(64))
    wechat_refund_no: Mapped[str] = mapped_column(String(64), unique=True)
    request_digest: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Money]
    reason: Mapped[str | None] = mapped_column(String(80))
    status: Mapped[RefundStatus] = mapped_column(str_enum(RefundStatus), default=RefundStatus.REQUESTED)
    refund_id: Mapped[str | None] = mapped_column(String(64))  # WeChat's
    failure_code: Mapped[str | None] = mapped_column(String(64))
    submit_attempts: Mapped[int] = mapped_column(default=0)
    succeeded_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
