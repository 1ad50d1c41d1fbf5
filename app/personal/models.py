"""Personal red packets and the per-campaign terms that allow them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, IdPK, str_enum, utcnow
from app.core.money import Money

# The out_order_no of a funding order: ':' is outside the shop's out_order_no alphabet, so no shop
# order can ever carry it, and a funding order is recognised by its number alone.
FUNDING_ORDER_PREFIX = "personal:"
RULE_ID = "personal"  # the rule id a personal packet's red packet carries


class PersonalTerms(Base):
    """A campaign's terms for personal packets: the sender's rebate on the friend's spend and the limits."""

    __tablename__ = "personal_packet_terms"

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    campaign_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("campaigns.id"), unique=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    sender_rate_bp: Mapped[int]
    sender_cap: Mapped[Money | None]
    min_amount: Mapped[Money]
    max_amount: Mapped[Money]
    min_spend: Mapped[Money]  # of the friend's order; never below the packet's value + 1 fen
    max_order: Mapped[Money]  # the friend's order counts up to this for the sender's rebate
    valid_days: Mapped[int]  # how long a claimed packet can be spent
    claim_hours: Mapped[int] = mapped_column(default=24)  # unclaimed after this → refunded
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ChallengeKind(StrEnum):
    NONE = "none"
    STEPS = "steps"  # the friend walks at least ``challenge_target`` steps by the deadline
    CHECK_IN = "check_in"  # the friend checks in (reading, gym…) by the deadline


class Outcome(StrEnum):
    WON = "won"  # the friend met the challenge: the packet is theirs
    LOST = "lost"  # the friend did not: the money goes back to the sender


class PersonalPacketStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"  # created; the sender has not paid yet
    FUNDED = "funded"  # paid: the money is the sender's prepaid balance, claimable
    AWAITING_SENDER = "awaiting_sender"  # claimed on a challenge; the sender has not confirmed the win
    CLAIMED = "claimed"  # an in-app red packet of the friend now
    REFUNDING = "refunding"  # unclaimed, lost or expired unspent: WeChat refund of the payment asked
    REFUNDED = "refunded"
    CLOSED = "closed"  # never paid (the funding order closed)


PERSONAL_TRANSITIONS: dict[PersonalPacketStatus, frozenset[PersonalPacketStatus]] = {
    PersonalPacketStatus.PENDING_PAYMENT: frozenset(
        {PersonalPacketStatus.FUNDED, PersonalPacketStatus.CLOSED}
    ),
    PersonalPacketStatus.FUNDED: frozenset(
        {PersonalPacketStatus.AWAITING_SENDER, PersonalPacketStatus.CLAIMED, PersonalPacketStatus.REFUNDING}
    ),
    PersonalPacketStatus.AWAITING_SENDER: frozenset(
        {PersonalPacketStatus.CLAIMED, PersonalPacketStatus.REFUNDING}
    ),
    # A claimed packet that expires unspent gives the money back too.
    PersonalPacketStatus.CLAIMED: frozenset({PersonalPacketStatus.REFUNDING}),
    PersonalPacketStatus.REFUNDING: frozenset({PersonalPacketStatus.REFUNDED}),
    PersonalPacketStatus.REFUNDED: frozenset(),
    # WeChat may still report a payment made just before the close reached it.
    PersonalPacketStatus.CLOSED: frozenset({PersonalPacketStatus.FUNDED}),
}


class PersonalPacket(Base):
    """A red packet consumer ``sender_id`` pays for a friend; the friend's spend earns the sender a rebate.

    ``friend_id`` is the friend named at creation, or whoever claimed it with the share code.
    """

    __tablename__ = "personal_packets"
    __table_args__ = (
        Index("ix_personal_packets_sender", "merchant_id", "sender_id"),
        Index("ix_personal_packets_friend", "merchant_id", "friend_id"),
        Index("ix_personal_packets_status_deadline", "status", "claim_deadline"),
    )

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    campaign_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("campaigns.id"))
    sender_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("consumers.id"))
    friend_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("consumers.id"))
    share_code: Mapped[str] = mapped_column(String(32), unique=True)
    amount: Mapped[Money]
    message: Mapped[str] = mapped_column(String(80), default="")
    challenge: Mapped[ChallengeKind] = mapped_column(str_enum(ChallengeKind), default=ChallengeKind.NONE)
    challenge_target: Mapped[int | None]
    challenge_deadline: Mapped[datetime | None]
    sender_outcome: Mapped[Outcome | None] = mapped_column(str_enum(Outcome))
    friend_outcome: Mapped[Outcome | None] = mapped_column(str_enum(Outcome))
    # The terms frozen at creation (the red packet freezes them again when it is issued).
    sender_rate_bp: Mapped[int]
    sender_cap: Mapped[Money | None]
    min_spend: Mapped[Money]
    max_order: Mapped[Money]
    valid_days: Mapped[int]
    status: Mapped[PersonalPacketStatus] = mapped_column(
        str_enum(PersonalPacketStatus), default=PersonalPacketStatus.PENDING_PAYMENT
    )
    funding_order_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("orders.id"), unique=True)
    red_packet_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("red_packets.id"), unique=True)
    refund_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("refunds.id"), unique=True)
    claim_hours: Mapped[int] = mapped_column(default=24)
    claim_deadline: Mapped[datetime | None]  # set when funded
    funded_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    refunded_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
