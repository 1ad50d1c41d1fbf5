from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, IdPK, str_enum, utcnow
from app.core.money import Money


class OrderStatus(StrEnum):
    """Payment state of an order. Refunds are tracked beside it (``refunded``), not as a state."""

    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    CLOSED = "closed"  # never paid; closed at WeChat too


# Allowed transitions; anything else is a bug or a forged callback.
ORDER_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING_PAYMENT: frozenset({OrderStatus.PAID, OrderStatus.CLOSED}),
    OrderStatus.PAID: frozenset(),
    # WeChat may still report a payment made just before the close reached it.
    OrderStatus.CLOSED: frozenset({OrderStatus.PAID}),
}


class Order(Base):
    """One order of one consumer at one merchant. Money is fen; ``total`` is what the shop charged."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("merchant_id", "out_order_no"),
        Index("ix_orders_status_created", "status", "created_at"),
    )

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    consumer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("consumers.id"), index=True)
    out_order_no: Mapped[str] = mapped_column(String(64))
    # SHA-256 of the registration body, so a retried registration is recognised and a changed one refused.
    request_digest: Mapped[str] = mapped_column(String(64))
    status: Mapped[OrderStatus] = mapped_column(str_enum(OrderStatus), default=OrderStatus.PENDING_PAYMENT)
    total: Mapped[Money]
    shipping: Mapped[Money] = mapped_column(default=Money(0))
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(String(127))
    promoter_code: Mapped[str | None] = mapped_column(String(32))
    # Set when paid: what WeChat confirmed, through which payment attempt.
    paid_amount: Mapped[Money] = mapped_column(default=Money(0))
    discount: Mapped[Money] = mapped_column(default=Money(0))
    paid_at: Mapped[datetime | None]
    transaction_id: Mapped[str | None] = mapped_column(String(64))
    # Sum of refunds that are requested or done (never above paid_amount; see app.payments.refunds).
    refund_committed: Mapped[Money] = mapped_column(default=Money(0))
    refunded: Mapped[Money] = mapped_column(default=Money(0))
    closed_at: Mapped[datetime | None]
    shipped_at: Mapped[datetime | None]
    received_at: Mapped[datetime | None]
    # The shop's after-sale case ids still open; settlement waits while any is open.
    open_after_sale_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    last_after_sale_closed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
