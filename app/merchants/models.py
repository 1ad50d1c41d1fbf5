from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, IdPK, str_enum, utcnow
from app.core.money import Money


class MerchantStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class PayoutRail(StrEnum):
    """How money leaves for a consumer's WeChat change (protocol doc §5, §6)."""

    TRANSFER_BILL = "transfer_bill"
    CASH_RED_PACKET = "cash_red_packet"


class Merchant(Base):
    """One tenant. Public WeChat identifiers are columns; every secret is in ``sealed_credentials``."""

    __tablename__ = "merchants"

    id: Mapped[IdPK]
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    status: Mapped[MerchantStatus] = mapped_column(str_enum(MerchantStatus), default=MerchantStatus.ACTIVE)
    mp_appid: Mapped[str | None] = mapped_column(String(32), unique=True)
    oa_appid: Mapped[str | None] = mapped_column(String(32), unique=True)
    mchid: Mapped[str | None] = mapped_column(String(32))
    pay_serial_no: Mapped[str | None] = mapped_column(String(64))
    wechatpay_public_key_id: Mapped[str | None] = mapped_column(String(80))
    wechatpay_public_key_pem: Mapped[str | None] = mapped_column(Text)
    platform_certificates_pem: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Envelope-encrypted JSON of MerchantSecrets; see app.merchants.credentials.
    sealed_credentials: Mapped[str] = mapped_column(Text)

    payout_rail: Mapped[PayoutRail] = mapped_column(str_enum(PayoutRail), default=PayoutRail.TRANSFER_BILL)
    withdrawal_min: Mapped[Money] = mapped_column(default=Money(100))
    withdrawal_fee_bp: Mapped[int] = mapped_column(default=0)
    withdrawal_daily_limit: Mapped[Money] = mapped_column(default=Money(500_00))
    withdrawal_auto_approve_max: Mapped[Money] = mapped_column(default=Money(50_00))
    after_sales_window_days: Mapped[int] = mapped_column(default=7)
    # Origins (scheme://host[:port]) of the merchant's H5 pages that OAuth may return to.
    h5_origins: Mapped[list[str]] = mapped_column(JSON, default=list)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"<Merchant {self.id} {self.slug}>"

    def public_profile(self) -> dict[str, Any]:
        """What staff may see: identifiers and policy, never a secret."""
        return {
            "id": self.id,
            "slug": self.slug,
            "name": self.name,
            "status": self.status.value,
            "mp_appid": self.mp_appid,
            "oa_appid": self.oa_appid,
            "mchid": self.mchid,
        }
