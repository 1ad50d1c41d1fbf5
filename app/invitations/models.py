"""Invite codes (one per consumer) and invite bindings (who brought a new customer in)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, IdPK, utcnow


class InviteCode(Base):
    """A consumer's one code at their merchant: shared as a link / QR code, and the shop's promoter code."""

    __tablename__ = "invite_codes"
    __table_args__ = (UniqueConstraint("merchant_id", "code"), UniqueConstraint("consumer_id"))

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    consumer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("consumers.id"))
    code: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InviteBinding(Base):
    """``invitee_id`` was brought in by ``inviter_id``; at most one per invitee (the first one wins).

    It attributes orders paid in ``[bound_at, expires_at)`` only; the row stays after that, as history.
    """

    __tablename__ = "invite_bindings"
    __table_args__ = (
        UniqueConstraint("invitee_id"),
        CheckConstraint("inviter_id <> invitee_id", name="not_self"),
    )

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    invitee_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("consumers.id"))
    inviter_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("consumers.id"), index=True)
    code: Mapped[str] = mapped_column(String(16))
    bound_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
