from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, IdPK, str_enum, utcnow


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    ACTIVE = "active"
    PAUSED = "paused"
    ENDED = "ended"


CAMPAIGN_TRANSITIONS: dict[CampaignStatus, frozenset[CampaignStatus]] = {
    CampaignStatus.DRAFT: frozenset({CampaignStatus.SCHEDULED, CampaignStatus.ACTIVE, CampaignStatus.ENDED}),
    CampaignStatus.SCHEDULED: frozenset({CampaignStatus.ACTIVE, CampaignStatus.PAUSED, CampaignStatus.ENDED}),
    CampaignStatus.ACTIVE: frozenset({CampaignStatus.PAUSED, CampaignStatus.ENDED}),
    CampaignStatus.PAUSED: frozenset({CampaignStatus.ACTIVE, CampaignStatus.ENDED}),
    CampaignStatus.ENDED: frozenset(),
}


class Campaign(Base):
    """A campaign's money lives in the ledger (campaign_budget / campaign_reserved accounts)."""

    __tablename__ = "campaigns"
    __table_args__ = (Index("ix_campaigns_merchant_status", "merchant_id", "status"),)

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    name: Mapped[str] = mapped_column(String(120))
    status: Mapped[CampaignStatus] = mapped_column(str_enum(CampaignStatus), default=CampaignStatus.DRAFT)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    current_version_id: Mapped[int | None] = mapped_column(BigInteger)
    # Settled rebates are paid straight to the consumer's WeChat change (through the payout path).
    pays_out_as_cash: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Why grants were not made, counted by reason ("budget exhausted": 3, …), for the console.
    skip_stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RuleVersion(Base):
    """An immutable version of a campaign's rules; grants and red packets keep the one they came from."""

    __tablename__ = "campaign_rule_versions"
    __table_args__ = (UniqueConstraint("campaign_id", "version"),)

    id: Mapped[IdPK]
    campaign_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("campaigns.id"), index=True)
    version: Mapped[int]
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by_staff_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("staff_accounts.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
