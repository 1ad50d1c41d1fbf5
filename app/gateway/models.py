from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, IdPK, utcnow


class GatewayEvent(Base):
    """One exchange with WeChat, inbound or outbound, with a redacted body (for reconciliation and 3 a.m.)."""

    __tablename__ = "gateway_events"
    __table_args__ = (Index("ix_gateway_events_key", "merchant_id", "idempotency_key"),)

    id: Mapped[IdPK]
    merchant_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    # No foreign key on purpose: a log row must never take a lock on the order it mentions (an FK check
    # takes a KEY SHARE lock, which deadlocks against the FOR UPDATE that applies a payment).
    order_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    direction: Mapped[str] = mapped_column(String(10))
    api: Mapped[str] = mapped_column(String(60))
    idempotency_key: Mapped[str | None] = mapped_column(String(64))
    http_status: Mapped[int | None]
    wechat_code: Mapped[str | None] = mapped_column(String(64))
    verified: Mapped[bool | None]
    body: Mapped[str] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
