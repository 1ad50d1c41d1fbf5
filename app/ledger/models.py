"""Accounts, journal entries and their postings. Entries and postings are written once, never changed."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, IdPK, str_enum, utcnow
from app.core.money import Money


class OwnerType(StrEnum):
    CONSUMER = "consumer"
    MERCHANT = "merchant"
    CAMPAIGN = "campaign"
    PLATFORM = "platform"


class AccountKind(StrEnum):
    """What an account holds; the kind fixes its owner type and whether it may go negative."""

    CONSUMER_PENDING = "consumer_pending"
    CONSUMER_AVAILABLE = "consumer_available"
    CONSUMER_WITHDRAWING = "consumer_withdrawing"
    CONSUMER_DEBT = "consumer_debt"
    # What a consumer paid to fund personal red packets for friends, not yet handed over (app.personal):
    # real money in, owed back to them until a friend claims it.
    CONSUMER_PREPAID = "consumer_prepaid"
    MERCHANT_REBATE = "merchant_rebate"
    MERCHANT_BUDGET = "merchant_budget"
    CAMPAIGN_BUDGET = "campaign_budget"
    CAMPAIGN_RESERVED = "campaign_reserved"
    PLATFORM_MARKETING_BUDGET = "platform_marketing_budget"
    PLATFORM_FUNDING_SOURCE = "platform_funding_source"
    WECHAT_CLEARING = "wechat_clearing"
    PAYOUTS_IN_FLIGHT = "payouts_in_flight"
    PAYOUTS_SETTLED = "payouts_settled"


class EntryReason(StrEnum):
    FUNDING = "funding"
    BUDGET_TRANSFER = "budget_transfer"
    RESERVE = "reserve"
    RELEASE = "release"
    RED_PACKET_REDEEM = "red_packet_redeem"
    REBATE_PENDING = "rebate_pending"
    SETTLE = "settle"
    CLAWBACK = "clawback"
    DEBT_NETTING = "debt_netting"
    WITHDRAW_REQUEST = "withdraw_request"
    WITHDRAW_CANCEL = "withdraw_cancel"
    PAYOUT_SUBMIT = "payout_submit"
    PAYOUT_SETTLE = "payout_settle"
    PAYOUT_RETURN = "payout_return"
    CORRECTION = "correction"
    PERSONAL_FUNDING = "personal_funding"  # a consumer's payment for a personal packet, into prepaid
    PERSONAL_FACE = "personal_face"  # a personal packet's face value between prepaid and the reserve
    PERSONAL_REFUND = "personal_refund"  # prepaid returned to the consumer by a WeChat refund
    # the friends' unopened shares of a fission red packet, returned by WeChat: paid out → campaign budget
    FISSION_UNOPENED = "fission_unopened"


class LedgerAccount(Base):
    """One bucket of money; ``balance`` caches the sum of its postings (``ledger check`` proves it)."""

    __tablename__ = "ledger_accounts"
    __table_args__ = (
        # Belt and braces behind post_entry's Overdraft: the database refuses a forbidden negative too.
        CheckConstraint("allow_negative OR balance >= 0", name="no_overdraft"),
    )

    id: Mapped[IdPK]
    # Platform accounts have no owner id and usually no merchant; NULLs never collide in a unique
    # constraint (PostgreSQL or SQLite), so uniqueness is on this key built from all four parts.
    natural_key: Mapped[str] = mapped_column(String(120), unique=True)
    merchant_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("merchants.id"), index=True)
    owner_type: Mapped[OwnerType] = mapped_column(str_enum(OwnerType))
    owner_id: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[AccountKind] = mapped_column(str_enum(AccountKind, length=32))
    balance: Mapped[Money] = mapped_column(default=Money(0))
    allow_negative: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"<LedgerAccount {self.id} {self.natural_key} {self.balance}>"


class JournalEntry(Base):
    """One balanced movement of money, written once under its caller-owned ``idempotency_key``."""

    __tablename__ = "journal_entries"
    __table_args__ = (Index("ix_journal_entries_cause", "cause_type", "cause_id"),)

    id: Mapped[IdPK]
    merchant_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("merchants.id"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    reason: Mapped[EntryReason] = mapped_column(str_enum(EntryReason))
    # What caused the movement (an order, a refund, a payout…), for audit and reversal lookups.
    cause_type: Mapped[str] = mapped_column(String(40))
    cause_id: Mapped[str] = mapped_column(String(64))
    rule_version_id: Mapped[int | None] = mapped_column(BigInteger)
    memo: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"<JournalEntry {self.id} {self.reason.value} {self.idempotency_key}>"


class Posting(Base):
    """One leg of an entry: ``amount`` is signed fen, negative out of the account, positive into it."""

    __tablename__ = "postings"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="nonzero"),
        # Timelines and the balance check read postings by account, newest entry first.
        Index("ix_postings_account_entry", "account_id", "entry_id"),
    )

    id: Mapped[IdPK]
    entry_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("journal_entries.id"), index=True)
    account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("ledger_accounts.id"))
    amount: Mapped[Money]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
