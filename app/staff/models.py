from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.auth.principals import Role
from app.core.db import Base, IdPK, str_enum, utcnow


class StaffAccount(Base):
    """A console user. ``session_epoch`` increments to invalidate every session of the account."""

    __tablename__ = "staff_accounts"

    id: Mapped[IdPK]
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(120))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_platform_admin: Mapped[bool] = mapped_column(default=False)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    session_epoch: Mapped[int] = mapped_column(default=0)
    disabled_at: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StaffMembership(Base):
    """A staff member's one role at one merchant."""

    __tablename__ = "staff_memberships"
    __table_args__ = (UniqueConstraint("staff_id", "merchant_id"),)

    id: Mapped[IdPK]
    staff_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("staff_accounts.id"), index=True)
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"), index=True)
    role: Mapped[Role] = mapped_column(str_enum(Role))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
