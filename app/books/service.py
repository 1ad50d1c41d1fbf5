"""The merchant's books, read for the console, and money paid into its marketing budget.

Every balance is a ledger account's cached balance, and every breakdown a sum of that account's postings
by entry reason: nothing here re-adds business rows where the ledger holds the figure. Reads never create
an account (a missing one is 0), so a GET writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select

from app.audit.service import Actor
from app.campaigns.models import Campaign
from app.campaigns.service import deposit_budget
from app.consumers.models import Consumer, WeChatIdentity
from app.core.errors import Conflict, NotFound
from app.core.money import Money
from app.extensions import db
from app.ledger.accounts import natural_key
from app.ledger.models import AccountKind, EntryReason, JournalEntry, LedgerAccount, OwnerType, Posting
from app.ledger.service import find_entry
from app.orders.models import Order, OrderStatus
from app.payments.models import PaymentAttempt, Refund
from app.rebates.models import RebateGrant
from app.red_packets.models import RedPacket
from app.withdrawals.service import withdrawals_of

#: Entries that move campaign money to a beneficiary (the face value spent, rebates) or back (clawbacks).
_SPENDING = (EntryReason.RED_PACKET_REDEEM, EntryReason.REBATE_PENDING, EntryReason.CLAWBACK)
_WALLET = {
    AccountKind.CONSUMER_PENDING: "pending",
    AccountKind.CONSUMER_AVAILABLE: "available",
    AccountKind.CONSUMER_WITHDRAWING: "withdrawing",
    AccountKind.CONSUMER_DEBT: "debt",
}


def _fen(value: Money | int | None) -> Money:
    # SUM over a Money column comes back as Money; be lenient if a driver hands back a plain number.
    return value if isinstance(value, Money) else Money(int(value or 0))


def _balance(kind: AccountKind, owner_type: OwnerType, owner_id: int, merchant_id: int) -> Money:
    key = natural_key(kind=kind, owner_type=owner_type, owner_id=owner_id, merchant_id=merchant_id)
    value = db.session.scalar(select(LedgerAccount.balance).where(LedgerAccount.natural_key == key))
    return value if value is not None else Money(0)


# ---------------------------------------------------------------- money


def merchant_money(*, merchant_id: int) -> dict[str, Any]:
    """The unallocated budget, the merchant rebate account with its postings by reason, and each
    campaign's budget, reserved, funded and spent (all from the ledger) with its skip counts."""
    merchant = OwnerType.MERCHANT
    rebate_by_reason = {
        reason.value: _fen(total).fen
        for reason, total in db.session.execute(
            select(JournalEntry.reason, func.coalesce(func.sum(Posting.amount), 0))
            .join(Posting, Posting.entry_id == JournalEntry.id)
            .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
            .where(
                LedgerAccount.natural_key
                == natural_key(
                    kind=AccountKind.MERCHANT_REBATE,
                    owner_type=merchant,
                    owner_id=merchant_id,
                    merchant_id=merchant_id,
                )
            )
            .group_by(JournalEntry.reason)
        ).tuples()
    }
    # Per campaign and reason, the net postings on its two accounts (budget and reserved).
    flows: dict[int, dict[EntryReason, Money]] = {}
    for campaign_id, reason, total in db.session.execute(
        select(LedgerAccount.owner_id, JournalEntry.reason, func.coalesce(func.sum(Posting.amount), 0))
        .join(Posting, Posting.account_id == LedgerAccount.id)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(LedgerAccount.merchant_id == merchant_id, LedgerAccount.owner_type == OwnerType.CAMPAIGN)
        .group_by(LedgerAccount.owner_id, JournalEntry.reason)
    ).tuples():
        if campaign_id is not None:
            flows.setdefault(campaign_id, {})[reason] = _fen(total)
    campaigns = []
    for campaign in db.session.scalars(
        select(Campaign).where(Campaign.merchant_id == merchant_id).order_by(Campaign.id)
    ):
        flow = flows.get(campaign.id, {})
        spent = -sum((flow.get(reason, Money(0)) for reason in _SPENDING), Money(0))
        campaigns.append(
            {
                "id": campaign.id,
                "name": campaign.name,
                "status": campaign.status.value,
                "budget_fen": _balance(
                    AccountKind.CAMPAIGN_BUDGET, OwnerType.CAMPAIGN, campaign.id, merchant_id
                ).fen,
                "reserved_fen": _balance(
                    AccountKind.CAMPAIGN_RESERVED, OwnerType.CAMPAIGN, campaign.id, merchant_id
                ).fen,
                "funded_fen": flow.get(EntryReason.BUDGET_TRANSFER, Money(0)).fen,
                "spent_fen": spent.fen,
                "skip_stats": dict(campaign.skip_stats or {}),
            }
        )
    return {
        "budget_fen": _balance(AccountKind.MERCHANT_BUDGET, merchant, merchant_id, merchant_id).fen,
        "rebate_fen": _balance(AccountKind.MERCHANT_REBATE, merchant, merchant_id, merchant_id).fen,
        "rebate_by_reason": rebate_by_reason,
        "campaigns": campaigns,
    }


@dataclass(frozen=True)
class Deposit:
    entry_id: int
    amount: Money
    idempotency_key: str
    replayed: bool
    budget: Money


def deposit_key(merchant_id: int, idempotency_key: str) -> str:
    """The key handed to :func:`deposit_budget` for a console deposit: the client's key, kept apart per
    merchant (one merchant's key never answers for another's) and from the operators' CLI keys."""
    return f"console:{merchant_id}:{idempotency_key}"


def deposit_merchant_budget(
    *, merchant_id: int, amount: Money, idempotency_key: str, actor: Actor
) -> Deposit:
    """Record money the merchant paid in, into its marketing budget: the ledger entry of ``budgets
    deposit``, once per ``idempotency_key`` and audited once. A replay returns the first deposit; the
    same key with another amount is a 409."""
    key = deposit_key(merchant_id, idempotency_key)
    done = deposit_budget(key=key, amount=amount, merchant_id=merchant_id, actor=actor)
    entry = find_entry(f"deposit:{key}")
    assert entry is not None  # just posted, or posted before under this key
    recorded = db.session.scalar(
        select(Posting.amount)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(Posting.entry_id == entry.id, LedgerAccount.kind == AccountKind.MERCHANT_BUDGET)
    )
    recorded = _fen(recorded)
    if recorded != amount:
        raise Conflict(
            "this idempotency_key was used for another amount",
            details={"idempotency_key": idempotency_key, "amount_fen": recorded.fen},
        )
    budget = _balance(AccountKind.MERCHANT_BUDGET, OwnerType.MERCHANT, merchant_id, merchant_id)
    return Deposit(entry.id, recorded, idempotency_key, not done, budget)


# ---------------------------------------------------------------- orders


def list_orders(
    *,
    merchant_id: int,
    limit: int,
    before: int | None = None,
    status: OrderStatus | None = None,
    consumer_id: int | None = None,
) -> tuple[list[Order], int | None]:
    """Newest first, keyset-paged on id: (orders, ``before`` of the next page or None)."""
    query = select(Order).where(Order.merchant_id == merchant_id)
    if before is not None:
        query = query.where(Order.id < before)
    if status is not None:
        query = query.where(Order.status == status)
    if consumer_id is not None:
        query = query.where(Order.consumer_id == consumer_id)
    rows = list(db.session.scalars(query.order_by(Order.id.desc()).limit(limit + 1)))
    return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)


def order_detail(*, merchant_id: int, order_id: int) -> dict[str, Any]:
    """One order with its payment attempts, the red packet spent on it, its rebate grants and refunds."""
    order = db.session.get(Order, order_id)
    if order is None or order.merchant_id != merchant_id:
        raise NotFound("no such order")

    def of(model: Any) -> list[Any]:
        return list(db.session.scalars(select(model).where(model.order_id == order.id).order_by(model.id)))

    return {
        "order": order,
        "payment_attempts": of(PaymentAttempt),
        "red_packets": of(RedPacket),
        "grants": of(RebateGrant),
        "refunds": of(Refund),
    }


# ---------------------------------------------------------------- consumers


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def list_consumers(
    *, merchant_id: int, limit: int, before: int | None = None, q: str | None = None
) -> tuple[list[Consumer], int | None]:
    """Newest first, keyset-paged on id; ``q`` matches a nickname (contains, any case) or an openid."""
    query = select(Consumer).where(Consumer.merchant_id == merchant_id)
    if before is not None:
        query = query.where(Consumer.id < before)
    if q:
        by_openid = select(WeChatIdentity.consumer_id).where(
            WeChatIdentity.merchant_id == merchant_id, WeChatIdentity.openid == q
        )
        query = query.where(or_(Consumer.nickname.ilike(_like(q), escape="\\"), Consumer.id.in_(by_openid)))
    rows = list(db.session.scalars(query.order_by(Consumer.id.desc()).limit(limit + 1)))
    return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)


def consumer_detail(*, merchant_id: int, consumer_id: int) -> dict[str, Any]:
    """A consumer, their wallet buckets from the ledger (debt as a positive amount owed) and withdrawals."""
    consumer = db.session.get(Consumer, consumer_id)
    if consumer is None or consumer.merchant_id != merchant_id:
        raise NotFound("no such consumer")
    wallet = {
        name: _balance(kind, OwnerType.CONSUMER, consumer.id, merchant_id) for kind, name in _WALLET.items()
    }
    debt = wallet["debt"]
    wallet["debt"] = -debt if debt.is_negative else Money(0)
    return {
        "consumer": consumer,
        "wallet": wallet,
        "withdrawals": withdrawals_of(merchant_id=merchant_id, consumer_id=consumer.id),
    }
