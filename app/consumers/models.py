from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, IdPK, str_enum, utcnow


class ConsumerStatus(StrEnum):
    ACTIVE = "active"
    BANNED = "banned"


class AppKind(StrEnum):
    MINIPROGRAM = "miniprogram"
    OFFICIAL_ACCOUNT = "official_account"


class Consumer(Base):
    """A person, as one merchant knows them. Identities from several apps link here by unionid."""

    __tablename__ = "consumers"
    __table_args__ = (UniqueConstraint("merchant_id", "unionid"),)

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"), index=True)
    unionid: Mapped[str | None] = mapped_column(String(64))
    nickname: Mapped[str | None] = mapped_column(String(64))
    avatar_url: Mapped[str | None] = mapped_column(String(512))
    phone: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[ConsumerStatus] = mapped_column(str_enum(ConsumerStatus), default=ConsumerStatus.ACTIVE)
    banned_reason: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WeChatIdentity(Base):
    """An openid under one app. ``sealed_session_key`` / ``sealed_oauth`` are envelope-encrypted."""

    __tablename__ = "wechat_identities"
    __table_args__ = (UniqueConstraint("appid", "openid"),)

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    consumer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("consumers.id"), index=True)
    app_kind: Mapped[AppKind] = mapped_column(str_enum(AppKind))
    appid: Mapped[str] = mapped_column(String(32))
    openid: Mapped[str] = mapped_column(String(64))
    sealed_session_key: Mapped[str | None] = mapped_column(Text)
    sealed_oauth: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsumerSession(Base):
    """A bearer token (stored as its digest) for one consumer at one merchant."""

    __tablename__ = "consumer_sessions"
    __table_args__ = (Index("ix_consumer_sessions_consumer", "consumer_id", "revoked_at"),)

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    consumer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("consumers.id"))
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    ip: Mapped[str | None] = mapped_column(String(64))
