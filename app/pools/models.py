"""Pools, their pre-split shares, the grants (one per grabber), share links and fission tier rewards."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, IdPK, str_enum, utcnow
from app.core.money import Money


class PoolStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    CLOSED = "closed"


POOL_TRANSITIONS: dict[PoolStatus, frozenset[PoolStatus]] = {
    PoolStatus.DRAFT: frozenset({PoolStatus.OPEN, PoolStatus.CLOSED}),
    PoolStatus.OPEN: frozenset({PoolStatus.CLOSED}),
    PoolStatus.CLOSED: frozenset(),
}


class SplitKind(StrEnum):
    FIXED = "fixed"  # every share the same (the remainder spread one fen at a time over the first ones)
    RANDOM = "random"  # 拼手气: double-mean random split, at least 1 fen each


class Audience(StrEnum):
    ALL = "all"
    FOLLOWERS = "followers"  # following the merchant's official account
    NEW_USERS = "new_users"  # no paid order at the merchant yet


class PoolPayout(StrEnum):
    RED_PACKET = "red_packet"  # an in-app red packet (spendable; its spend books the two-way legs)
    CASH = "cash"  # WeChat change, on the payout rails (商家转账 for everyone, sendredpack where the merchant has it)
    # One sendgroupredpack (裂变红包) of the share to the grabber, split by WeChat among ``fission_count``
    # people; 商家转账 (once) where the merchant's account has no cash red packets.
    FISSION_CASH = "fission_cash"


class Pool(Base):
    """A pool of ``count`` shares summing to ``total``, grabbed once per consumer while open.

    ``reserved`` is what opening moved from the campaign's budget to its reserve (the total plus each
    share's worst-case rebate legs); ``released`` what closing gave back (the shares nobody grabbed).
    """

    __tablename__ = "pools"
    __table_args__ = (Index("ix_pools_merchant_status", "merchant_id", "status"),)

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    campaign_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("campaigns.id"), index=True)
    rule_version_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("campaign_rule_versions.id"))
    name: Mapped[str] = mapped_column(String(120))
    status: Mapped[PoolStatus] = mapped_column(str_enum(PoolStatus), default=PoolStatus.DRAFT)
    split: Mapped[SplitKind] = mapped_column(str_enum(SplitKind))
    audience: Mapped[Audience] = mapped_column(str_enum(Audience), default=Audience.ALL)
    payout: Mapped[PoolPayout] = mapped_column(str_enum(PoolPayout), default=PoolPayout.RED_PACKET)
    total: Mapped[Money]
    count: Mapped[int]
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    # The in-app red packet each share becomes: its terms, frozen here.
    min_spend: Mapped[Money]
    valid_days: Mapped[int]
    issuer_rate_bp: Mapped[int] = mapped_column(default=0)
    buyer_rate_bp: Mapped[int] = mapped_column(default=0)
    max_order: Mapped[Money]
    legs_worst_case: Mapped[Money]  # the most one share's two rebate legs can cost
    # Fission: [{"friends": 3, "reward_fen": 100}, …], ascending; each tier paid once per sharer.
    ladder: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    fission_count: Mapped[int | None]  # fission_cash: the group packet's total_num (3…20)
    reserved: Mapped[Money] = mapped_column(default=Money(0))
    released: Mapped[Money] = mapped_column(default=Money(0))
    best_grant_id: Mapped[int | None] = mapped_column(BigInteger)
    opened_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    created_by_staff_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("staff_accounts.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PoolShare(Base):
    """One pre-split share (the system of record Redis's list is rebuilt from)."""

    __tablename__ = "pool_shares"
    __table_args__ = (UniqueConstraint("pool_id", "seq"),)

    id: Mapped[IdPK]
    pool_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("pools.id"))
    seq: Mapped[int]
    amount: Mapped[Money]


class PoolGrant(Base):
    """A share grabbed by a consumer: at most one per share and one per consumer (the structural guards).

    ``reserved`` is the part of the pool's reservation the grant's red packet took over; a cash grant
    (no packet) holds it in the pool until ``paid_at``, when it moves to the consumer and out by payout.
    """

    __tablename__ = "pool_grants"
    __table_args__ = (UniqueConstraint("pool_id", "seq"), UniqueConstraint("pool_id", "consumer_id"))

    id: Mapped[IdPK]
    pool_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("pools.id"))
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    seq: Mapped[int]
    consumer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("consumers.id"), index=True)
    amount: Mapped[Money]
    reserved: Mapped[Money]
    red_packet_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("red_packets.id"), unique=True)
    paid_at: Mapped[datetime | None]  # a cash grant's money moved to the consumer and into a withdrawal
    # fission_cash: the group packet was refused for want of the product, and the share went to the
    # default rail (once: ``UPDATE … WHERE fallback_at IS NULL``).
    fallback_at: Mapped[datetime | None]
    # fission_cash: what of the group packet WeChat gave back to the merchant once its day was over (the
    # friends' shares nobody opened), booked back to the campaign's budget; 0 when all were opened. Set
    # once (``UPDATE … WHERE unopened IS NULL``); NULL until known.
    unopened: Mapped[Money | None]
    unopened_asked_at: Mapped[datetime | None]  # when WeChat was last asked about it (asked in turn)
    # asked for the last time without an answer to book (three days on, or one that cannot be right): a
    # person was asked (review item ``fission_unopened_unknown``) and the sweep asks no more
    unopened_flagged_at: Mapped[datetime | None]
    via_sharer_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("consumers.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PoolShareLink(Base):
    """A grabber's share link into a pool, with its funnel (opened, grabbed through)."""

    __tablename__ = "pool_share_links"
    __table_args__ = (UniqueConstraint("pool_id", "sharer_id"),)

    id: Mapped[IdPK]
    pool_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("pools.id"))
    sharer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("consumers.id"))
    opens: Mapped[int] = mapped_column(default=0)
    grabs: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PoolTierReward(Base):
    """A fission tier a sharer reached; paid once (unique per pool, sharer and tier) as a red packet."""

    __tablename__ = "pool_tier_rewards"
    __table_args__ = (UniqueConstraint("pool_id", "sharer_id", "tier"),)

    id: Mapped[IdPK]
    pool_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("pools.id"))
    sharer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("consumers.id"))
    tier: Mapped[int]
    friends: Mapped[int]
    amount: Mapped[Money]
    red_packet_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("red_packets.id"))
    skipped_reason: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
