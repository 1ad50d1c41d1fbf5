"""A consumer's request to take available money out; its payout (if approved) carries it to WeChat."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, IdPK, str_enum, utcnow
from app.core.money import Money


class WithdrawalStatus(StrEnum):
    PENDING_REVIEW = "pending_review"
    APPROVED = "approved"  # a payout carries it; its state is the payout's
    REJECTED = "rejected"  # money back in available; ``reason`` says why


WITHDRAWAL_TRANSITIONS: dict[WithdrawalStatus, frozenset[WithdrawalStatus]] = {
    WithdrawalStatus.PENDING_REVIEW: frozenset({WithdrawalStatus.APPROVED, WithdrawalStatus.REJECTED}),
    WithdrawalStatus.APPROVED: frozenset(),
    WithdrawalStatus.REJECTED: frozenset(),
}


class Withdrawal(Base):
    __tablename__ = "withdrawals"
    __table_args__ = (UniqueConstraint("merchant_id", "consumer_id", "idempotency_key"),)

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"), index=True)
    consumer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("consumers.id"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Money]  # taken from available
    fee: Mapped[Money]  # part of ``amount`` kept by the merchant
    status: Mapped[WithdrawalStatus] = mapped_column(
        str_enum(WithdrawalStatus), default=WithdrawalStatus.PENDING_REVIEW
    )
    reason: Mapped[str | None] = mapped_column(String(255))
    reviewed_by: Mapped[int | None] = mapped_column(BigInteger)
    payout_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("payouts.id"))
    # The merchant's app it was asked from (mini-program or official-account H5): a transfer bill pays the
    # consumer's openid of that app when they have one, so they confirm it where they asked for it.
    appid: Mapped[str | None] = mapped_column(String(32))
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def net(self) -> Money:
        return self.amount - self.fee
