"""The payout row: the outbox of one transfer to a consumer's WeChat change, with its bill number."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, IdPK, str_enum, utcnow
from app.core.money import Money
from app.merchants.models import PayoutRail


class PayoutStatus(StrEnum):
    CREATED = "created"  # saved with its bill number; nothing sent yet
    SUBMITTING = (
        "submitting"  # a call may be in flight: the outcome is learned by query or same-number resend
    )
    UNKNOWN = "unknown"  # WeChat answered ambiguously (timeout, SYSTEMERROR, unparsable, unknown code)
    ACCEPTED = "accepted"  # WeChat holds it: awaiting user confirmation / an unopened red packet
    SUCCEEDED = "succeeded"  # the consumer has the money
    FAILED = "failed"  # finally failed (proven by WeChat): the money is back in available


PAYOUT_TRANSITIONS: dict[PayoutStatus, frozenset[PayoutStatus]] = {
    PayoutStatus.CREATED: frozenset({PayoutStatus.SUBMITTING}),
    PayoutStatus.SUBMITTING: frozenset(
        {PayoutStatus.UNKNOWN, PayoutStatus.ACCEPTED, PayoutStatus.SUCCEEDED, PayoutStatus.FAILED}
    ),
    PayoutStatus.UNKNOWN: frozenset(  # → SUBMITTING: a same-number resend
        {PayoutStatus.SUBMITTING, PayoutStatus.ACCEPTED, PayoutStatus.SUCCEEDED, PayoutStatus.FAILED}
    ),
    # → SUBMITTING only under a new number, after a query proved the old one finally failed.
    PayoutStatus.ACCEPTED: frozenset({PayoutStatus.SUBMITTING, PayoutStatus.SUCCEEDED, PayoutStatus.FAILED}),
    PayoutStatus.SUCCEEDED: frozenset(),
    PayoutStatus.FAILED: frozenset(),
}

OPEN_STATUSES = frozenset(
    {PayoutStatus.CREATED, PayoutStatus.SUBMITTING, PayoutStatus.UNKNOWN, PayoutStatus.ACCEPTED}
)


class Payout(Base):
    """One payout; ``bill_no`` (``out_bill_no`` / ``mch_billno``) derives from the id and the attempt.

    The attempt (and so the number) changes only after WeChat, asked with the old number, proved it finally
    failed; every number used is in ``history``.
    """

    __tablename__ = "payouts"
    __table_args__ = (
        Index("ix_payouts_due", "status", "next_attempt_at"),
        # One payout per withdrawal: a second approval, however concurrent, cannot create another
        # (a proven-failed attempt is renumbered on the same row, never a new one).
        UniqueConstraint("source_type", "source_id"),
    )

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"), index=True)
    consumer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("consumers.id"), index=True)
    source_type: Mapped[str] = mapped_column(String(24))  # "withdrawal"
    source_id: Mapped[int] = mapped_column(BigInteger)
    rail: Mapped[PayoutRail] = mapped_column(str_enum(PayoutRail))
    bill_no: Mapped[str | None] = mapped_column(String(32), unique=True)
    attempt: Mapped[int] = mapped_column(default=1)
    appid: Mapped[str] = mapped_column(String(32))
    openid: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Money]  # what the consumer receives
    # A fission red packet (sendgroupredpack, §5.3) of this many shares; None: one packet / transfer bill.
    group_size: Mapped[int | None]
    fee: Mapped[Money] = mapped_column(default=Money(0))  # kept by the merchant on success only
    status: Mapped[PayoutStatus] = mapped_column(str_enum(PayoutStatus), default=PayoutStatus.CREATED)
    wechat_state: Mapped[str | None] = mapped_column(String(24))
    wechat_id: Mapped[str | None] = mapped_column(String(64))  # transfer_bill_no / send_listid
    package_info: Mapped[str | None] = mapped_column(Text)
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_reason: Mapped[str | None] = mapped_column(String(255))  # shown to the consumer
    submit_calls: Mapped[int] = mapped_column(default=0)
    query_calls: Mapped[int] = mapped_column(default=0)
    tries: Mapped[int] = mapped_column(default=0)  # consecutive unsuccessful passes, for backoff
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The lease: a job may call WeChat for this row only while it holds an unexpired claim.
    claimed_until: Mapped[datetime | None]
    claim_token: Mapped[str | None] = mapped_column(String(36))
    accepted_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"<Payout {self.id} {self.bill_no} {self.status}>"


class PayoutProduct(StrEnum):
    CASH_RED_PACKET = "cash_red_packet"  # sendredpack / sendgroupredpack (§5): only some accounts have it


class PayoutCapability(Base):
    """Whether a merchant's WeChat Pay account has a payout product, as WeChat last answered
    (``NO_AUTH`` / ``PRODUCT_AUTHORITY_UNOPEN`` → off, with the reason). No row: never refused."""

    __tablename__ = "payout_capabilities"
    __table_args__ = (UniqueConstraint("merchant_id", "product"),)

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    product: Mapped[PayoutProduct] = mapped_column(str_enum(PayoutProduct))
    enabled: Mapped[bool]
    reason: Mapped[str | None] = mapped_column(String(255))
    wechat_code: Mapped[str | None] = mapped_column(String(64))
    detected_at: Mapped[datetime] = mapped_column(default=utcnow)
