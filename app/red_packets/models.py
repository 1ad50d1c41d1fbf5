from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, IdPK, str_enum, utcnow
from app.core.money import Money


class RedPacketStatus(StrEnum):
    ISSUED = "issued"
    RESERVED = "reserved"  # applied to an unpaid order
    REDEEMED = "redeemed"
    EXPIRED = "expired"
    REVOKED = "revoked"


class RedPacket(Base):
    """A red packet with the rates of the rule version that issued it, frozen at issue time.

    ``reserved`` is the worst-case cost still held in the campaign's reserve for this packet.
    """

    __tablename__ = "red_packets"
    __table_args__ = (Index("ix_red_packets_owner_status", "consumer_id", "status"),)

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    campaign_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("campaigns.id"), index=True)
    rule_version_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("campaign_rule_versions.id"))
    rule_id: Mapped[str] = mapped_column(String(64))
    consumer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("consumers.id"))
    issuer_consumer_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("consumers.id"))
    source_order_id: Mapped[int | None] = mapped_column(BigInteger)
    face_value: Mapped[Money]
    min_spend: Mapped[Money]
    issuer_rate_bp: Mapped[int]
    buyer_rate_bp: Mapped[int]
    max_order: Mapped[Money]
    issuer_cap: Mapped[Money | None]
    buyer_cap: Mapped[Money | None]
    reserved: Mapped[Money]
    status: Mapped[RedPacketStatus] = mapped_column(str_enum(RedPacketStatus), default=RedPacketStatus.ISSUED)
    order_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    redeemed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
