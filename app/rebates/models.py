from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, IdPK, str_enum, utcnow
from app.core.money import Money


class GrantStatus(StrEnum):
    PENDING = "pending"  # waiting out the after-sales window
    AVAILABLE = "available"  # settled into the beneficiary's available balance


class RebateGrant(Base):
    """One credit made by one rule for one paid order to one beneficiary — at most once (unique).

    ``reversed`` is how much of ``amount`` refunds have clawed back (pro rata, cumulative).
    """

    __tablename__ = "rebate_grants"
    __table_args__ = (
        UniqueConstraint("order_id", "rule_version_id", "rule_id", "beneficiary"),
        # A red packet is spent on one order: its redemption (and each leg it triggers) is booked once.
        UniqueConstraint("red_packet_id", "beneficiary"),
        # Likewise a coupon: each use (its cost and each leg) is booked once; a merchant coupon returned
        # (退券) on a refund may be used again, on another order.
        UniqueConstraint("coupon_id", "order_id", "beneficiary"),
        Index("ix_rebate_grants_status_order", "status", "order_id"),
    )

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    campaign_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("campaigns.id"))
    rule_version_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("campaign_rule_versions.id"))
    rule_id: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("orders.id"))
    red_packet_id: Mapped[int | None] = mapped_column(BigInteger)
    coupon_id: Mapped[int | None] = mapped_column(BigInteger)
    beneficiary: Mapped[str] = mapped_column(String(24))
    consumer_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("consumers.id"), index=True)
    amount: Mapped[Money]
    reversed: Mapped[Money] = mapped_column(default=Money(0))
    basis: Mapped[str] = mapped_column(String(255))
    status: Mapped[GrantStatus] = mapped_column(str_enum(GrantStatus), default=GrantStatus.PENDING)
    settled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
