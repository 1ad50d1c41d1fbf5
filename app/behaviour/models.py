from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, IdPK, str_enum, utcnow


class BehaviourKind(StrEnum):
    VIEW = "view"
    CART = "cart"
    SHARE = "share"


class BehaviourEvent(Base):
    __tablename__ = "behaviour_events"
    __table_args__ = (Index("ix_behaviour_events_consumer_at", "consumer_id", "occurred_at"),)

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    consumer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("consumers.id"))
    kind: Mapped[BehaviourKind] = mapped_column(str_enum(BehaviourKind))
    sku: Mapped[str | None] = mapped_column(String(64))
    page: Mapped[str | None] = mapped_column(String(255))
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(64))
