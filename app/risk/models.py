"""Risk control's records: per-merchant policies, every decision, linked accounts, held rewards."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base, IdPK, str_enum, utcnow


class Action(StrEnum):
    """What a consumer is about to get: a claim (red packet, pool grab, coupon), a reward (what a paid
    order books: rebate legs, invite, distribution), or money out (a withdrawal)."""

    CLAIM = "claim"
    REWARD = "reward"
    WITHDRAW = "withdraw"


class Outcome(StrEnum):
    ALLOW = "allow"
    LIMIT = "limit"  # refused for now (429 with a reason code); a later attempt may pass
    HOLD = "hold"  # booked, but kept out of `available` until a reviewer approves it
    BLOCK = "block"  # refused (banned consumer or group)


class HoldStatus(StrEnum):
    HELD = "held"
    APPROVED = "approved"
    REJECTED = "rejected"


# A held reward leaves review once, by one of these (the conditional UPDATE on `status = held` decides).
HOLD_TRANSITIONS: dict[HoldStatus, frozenset[HoldStatus]] = {
    HoldStatus.HELD: frozenset({HoldStatus.APPROVED, HoldStatus.REJECTED}),
    HoldStatus.APPROVED: frozenset(),
    HoldStatus.REJECTED: frozenset(),
}


class LinkKind(StrEnum):
    DEVICE = "device"
    IP = "ip"
    PAYER = "payer"
    PHONE = "phone"


class RiskPolicy(Base):
    """A merchant's risk settings (only what differs from the defaults in app.risk.policy); versioned."""

    __tablename__ = "risk_policies"

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"), unique=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RiskDecision(Base):
    """One decision of the engine, with what it saw (the replay's input) and why it decided."""

    __tablename__ = "risk_decisions"
    __table_args__ = (
        Index("ix_risk_decisions_merchant_at", "merchant_id", "created_at"),
        Index("ix_risk_decisions_consumer_at", "consumer_id", "created_at"),
    )

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    consumer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("consumers.id"))
    action: Mapped[Action] = mapped_column(str_enum(Action, 16))
    kind: Mapped[str] = mapped_column(String(32))  # red_packet, coupon, pool, order, withdrawal …
    reference: Mapped[str | None] = mapped_column(String(120))
    outcome: Mapped[Outcome] = mapped_column(str_enum(Outcome, 16))
    reasons: Mapped[list[str]] = mapped_column(JSON)
    scores: Mapped[dict[str, Any]] = mapped_column(JSON)
    # What the engine saw, kept for the dry run: the client's IP, the device's digest, the facts read.
    ip: Mapped[str | None] = mapped_column(String(64))
    device: Mapped[str | None] = mapped_column(String(64))
    facts: Mapped[dict[str, Any]] = mapped_column(JSON)
    policy_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RiskLink(Base):
    """A consumer seen with a device, IP, payer or phone (stored as a keyed digest, never in clear)."""

    __tablename__ = "risk_links"
    __table_args__ = (
        UniqueConstraint("merchant_id", "kind", "digest", "consumer_id"),
        Index("ix_risk_links_consumer", "consumer_id"),
    )

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    kind: Mapped[LinkKind] = mapped_column(str_enum(LinkKind, 16))
    digest: Mapped[str] = mapped_column(String(64))
    consumer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("consumers.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RiskMember(Base):
    """A consumer's linked-account group: ``group_id`` is the smallest consumer id of the group (kept
    incrementally: a new link that joins two groups moves the larger id's members to the smaller)."""

    __tablename__ = "risk_members"
    __table_args__ = (
        UniqueConstraint("merchant_id", "consumer_id"),
        Index("ix_risk_members_group", "merchant_id", "group_id"),
    )

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    consumer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("consumers.id"))
    group_id: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RiskHold(Base):
    """A reward booked but held out of `available` (its order's consumer grants are not settled) until a
    reviewer approves (released to settlement) or rejects it (reversed in the ledger)."""

    __tablename__ = "risk_holds"
    __table_args__ = (
        UniqueConstraint("merchant_id", "order_id"),
        Index("ix_risk_holds_merchant_status", "merchant_id", "status"),
    )

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    consumer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("consumers.id"))
    order_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("orders.id"))
    decision_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("risk_decisions.id"))
    decision: Mapped[RiskDecision | None] = relationship(lazy="raise")
    reasons: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[HoldStatus] = mapped_column(str_enum(HoldStatus, 16), default=HoldStatus.HELD)
    resolved_by_staff_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("staff_accounts.id"))
    resolution: Mapped[str | None] = mapped_column(String(255))
    reversed_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
