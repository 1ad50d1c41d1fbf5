"""The counter row of one limit for one subject in one window (e.g. a consumer's withdrawals today)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, IdPK, utcnow


class LimitCounter(Base):
    """What ``subject_id`` has used of the limit ``name`` within ``scope_id`` (e.g. a campaign; 0 for a
    merchant-wide limit) in the window starting ``window_start``.

    ``used`` only moves through :func:`app.limits.service.take` (``UPDATE … WHERE used + n <= limit``)
    and :func:`app.limits.service.give_back`; ``ledger check`` proves it equals what its rows say.
    """

    __tablename__ = "limit_counters"
    __table_args__ = (
        UniqueConstraint(
            "merchant_id", "name", "scope_id", "subject_id", "window_start", name="uq_limit_counters_window"
        ),
        CheckConstraint("used >= 0", name="used_not_negative"),
    )

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    name: Mapped[str] = mapped_column(String(40))  # e.g. "withdrawal.daily_fen"
    scope_id: Mapped[int] = mapped_column(BigInteger, default=0)  # e.g. the campaign; 0: merchant-wide
    subject_id: Mapped[int] = mapped_column(BigInteger)  # e.g. the consumer
    window_start: Mapped[datetime]
    used: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
