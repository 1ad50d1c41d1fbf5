"""The merchant's message templates, consumers' subscribe-message consents, and the outbox of messages."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, IdPK, str_enum, utcnow


class MessageKind(StrEnum):
    RED_PACKET_RECEIVED = "red_packet_received"
    RED_PACKET_EXPIRING = "red_packet_expiring"  # three days before it expires
    REBATE_AVAILABLE = "rebate_available"
    WITHDRAWAL_TO_CONFIRM = "withdrawal_to_confirm"  # 商家转账 waits for the user's confirmation
    WITHDRAWAL_ARRIVED = "withdrawal_arrived"


class Channel(StrEnum):
    MP_SUBSCRIBE = "mp_subscribe"  # mini-program subscribe message: one send per one-time consent
    OA_TEMPLATE = "oa_template"  # official-account template message: to followers


class MessageStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # WeChat refused it for good
    NO_CHANNEL = "no_channel"  # no consent and not following (or no template): nothing may be sent


class MessageTemplate(Base):
    """Which WeChat template carries one kind of message on one channel, and how our values fill it."""

    __tablename__ = "message_templates"
    __table_args__ = (UniqueConstraint("merchant_id", "kind", "channel"),)

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    kind: Mapped[MessageKind] = mapped_column(str_enum(MessageKind, length=32))
    channel: Mapped[Channel] = mapped_column(str_enum(Channel))
    template_id: Mapped[str] = mapped_column(String(64))
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)  # WeChat key (e.g. "amount2") → our value name
    page: Mapped[str] = mapped_column(String(255), default="")  # mini-program page or H5 URL opened
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MessageConsent(Base):
    """One-time subscribe-message consents a consumer gave for a template and not used yet."""

    __tablename__ = "message_consents"
    __table_args__ = (UniqueConstraint("merchant_id", "consumer_id", "template_id"),)

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    consumer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("consumers.id"))
    template_id: Mapped[str] = mapped_column(String(64))
    remaining: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ConsumerMessage(Base):
    """One message owed to a consumer (the outbox): made once per fact (``dedupe_key``), sent by a job."""

    __tablename__ = "consumer_messages"
    __table_args__ = (UniqueConstraint("merchant_id", "dedupe_key"),)

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    consumer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("consumers.id"), index=True)
    kind: Mapped[MessageKind] = mapped_column(str_enum(MessageKind, length=32))
    dedupe_key: Mapped[str] = mapped_column(String(96))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[MessageStatus] = mapped_column(str_enum(MessageStatus), default=MessageStatus.PENDING)
    channel: Mapped[Channel | None] = mapped_column(str_enum(Channel))
    consent_taken: Mapped[bool] = mapped_column(default=False)  # a one-time consent is spent on it
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
