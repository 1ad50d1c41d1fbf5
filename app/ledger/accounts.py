"""Ledger accounts: found or created by their natural key, race-safe; the kind decides the rules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple, cast

from sqlalchemy import ColumnElement, String, Table, event, literal, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from app.core.db import insert_unless_exists, utcnow
from app.core.money import Money
from app.extensions import db
from app.ledger.models import AccountKind, LedgerAccount, OwnerType

_CACHE = "hongli.ledger_accounts"

# Only these may go negative: a consumer's debt (clawback beyond the balance, shown to the user),
# the platform's funding source (money entering the system) and WeChat clearing (money at WeChat).
NEGATIVE_ALLOWED: frozenset[AccountKind] = frozenset(
    {AccountKind.CONSUMER_DEBT, AccountKind.PLATFORM_FUNDING_SOURCE, AccountKind.WECHAT_CLEARING}
)

OWNER_OF_KIND: dict[AccountKind, OwnerType] = {
    AccountKind.CONSUMER_PENDING: OwnerType.CONSUMER,
    AccountKind.CONSUMER_AVAILABLE: OwnerType.CONSUMER,
    AccountKind.CONSUMER_WITHDRAWING: OwnerType.CONSUMER,
    AccountKind.CONSUMER_DEBT: OwnerType.CONSUMER,
    AccountKind.CONSUMER_PREPAID: OwnerType.CONSUMER,
    AccountKind.MERCHANT_REBATE: OwnerType.MERCHANT,
    AccountKind.MERCHANT_BUDGET: OwnerType.MERCHANT,
    AccountKind.CAMPAIGN_BUDGET: OwnerType.CAMPAIGN,
    AccountKind.CAMPAIGN_RESERVED: OwnerType.CAMPAIGN,
    AccountKind.PLATFORM_MARKETING_BUDGET: OwnerType.PLATFORM,
    AccountKind.PLATFORM_FUNDING_SOURCE: OwnerType.PLATFORM,
    AccountKind.WECHAT_CLEARING: OwnerType.PLATFORM,
    AccountKind.PAYOUTS_IN_FLIGHT: OwnerType.PLATFORM,
    AccountKind.PAYOUTS_SETTLED: OwnerType.PLATFORM,
}


def allows_negative(kind: AccountKind) -> bool:
    """Whether an account of ``kind`` may hold a negative balance."""
    return kind in NEGATIVE_ALLOWED


def natural_key(
    *, kind: AccountKind, owner_type: OwnerType, owner_id: int | None, merchant_id: int | None
) -> str:
    """The unique text identity of an account; ``-`` stands for a missing owner or merchant."""
    owner = "-" if owner_id is None else str(owner_id)
    merchant = "-" if merchant_id is None else str(merchant_id)
    return f"{owner_type.value}:{owner}:{kind.value}:{merchant}"


def _validate(
    kind: AccountKind, owner_type: OwnerType, owner_id: int | None, merchant_id: int | None
) -> None:
    if OWNER_OF_KIND[kind] is not owner_type:
        raise ValueError(
            f"a {kind.value} account belongs to a {OWNER_OF_KIND[kind].value}, not a {owner_type.value}"
        )
    if owner_type is OwnerType.PLATFORM:
        if owner_id is not None:
            raise ValueError("platform accounts have no owner_id")
    elif owner_id is None or merchant_id is None:
        raise ValueError(f"a {owner_type.value} account needs both owner_id and merchant_id")


def account_for(
    *, kind: AccountKind, owner_type: OwnerType, owner_id: int | None, merchant_id: int | None
) -> LedgerAccount:
    """The account of ``kind`` for this owner, created on first use (concurrent first uses create one)."""
    _validate(kind, owner_type, owner_id, merchant_id)
    key = natural_key(kind=kind, owner_type=owner_type, owner_id=owner_id, merchant_id=merchant_id)
    # Accounts are looked up many times per paid order or payout: remember them for the session
    # (forgotten on any rollback, which may have undone an account's creation).
    cache: dict[str, LedgerAccount] = db.session.info.setdefault(_CACHE, {})
    cached = cache.get(key)
    if cached is not None and cached in db.session:
        return cached
    account = _load_or_create(key, kind, owner_type, owner_id, merchant_id)
    cache[key] = account
    return account


def _forget_accounts(session: Session, *_: object) -> None:
    session.info.pop(_CACHE, None)


def install_account_cache_hooks() -> None:
    """Forget remembered accounts whenever a session rolls back (idempotent, process-wide)."""
    if not event.contains(Session, "after_soft_rollback", _forget_accounts):
        event.listen(Session, "after_soft_rollback", _forget_accounts)


_CREATE_UNLESS_EXISTS = insert_unless_exists(
    cast(Table, LedgerAccount.__table__),
    (
        "natural_key",
        "merchant_id",
        "owner_type",
        "owner_id",
        "kind",
        "balance",
        "allow_negative",
        "created_at",
    ),
    key="natural_key",
)


def _load_or_create(
    key: str, kind: AccountKind, owner_type: OwnerType, owner_id: int | None, merchant_id: int | None
) -> LedgerAccount:
    by_key = select(LedgerAccount).where(LedgerAccount.natural_key == key)
    # Read first: accounts are looked up far more often than created, and a conflicting insert
    # would still burn a sequence value on PostgreSQL.
    account = db.session.scalar(by_key)
    if account is not None:
        return account
    db.session.execute(
        _CREATE_UNLESS_EXISTS,
        {
            "natural_key": key,
            "merchant_id": merchant_id,
            "owner_type": owner_type,
            "owner_id": owner_id,
            "kind": kind,
            "balance": Money(0),
            "allow_negative": allows_negative(kind),
            "created_at": utcnow(),
        },
    )
    return db.session.scalars(by_key).one()


def platform_account(kind: AccountKind, merchant_id: int | None = None) -> LedgerAccount:
    """A platform account of ``kind``; pass ``merchant_id`` for one kept per merchant (e.g. its clearing)."""
    return account_for(kind=kind, owner_type=OwnerType.PLATFORM, owner_id=None, merchant_id=merchant_id)


class _Buckets:
    """The accounts of one owner, each looked up (or created) only when first used: most callers touch
    one or two, and every look-up is a statement. Iterating yields them all, in declaration order."""

    _owner_type: OwnerType
    _kinds: tuple[AccountKind, ...]

    def __init__(self, owner_id: int, merchant_id: int) -> None:
        self._owner_id = owner_id
        self._merchant_id = merchant_id

    def _bucket(self, kind: AccountKind) -> LedgerAccount:
        return account_for(
            kind=kind, owner_type=self._owner_type, owner_id=self._owner_id, merchant_id=self._merchant_id
        )

    def __iter__(self) -> Iterator[LedgerAccount]:
        return (self._bucket(kind) for kind in self._kinds)

    def existing(self) -> list[LedgerAccount]:
        """The buckets already made, in one statement, creating none: what a read needs (creating an
        account is a write, and on SQLite a read's transaction that turns into a write after another
        commit is refused at once)."""
        keys = [
            natural_key(
                kind=kind, owner_type=self._owner_type, owner_id=self._owner_id, merchant_id=self._merchant_id
            )
            for kind in self._kinds
        ]
        return list(db.session.scalars(select(LedgerAccount).where(LedgerAccount.natural_key.in_(keys))))

    def balances(self) -> dict[AccountKind, Money]:
        """Every bucket's balance (0 for a bucket never used), creating nothing."""
        found = {account.kind: account.balance for account in self.existing()}
        return {kind: found.get(kind, Money(0)) for kind in self._kinds}


class ConsumerAccounts(_Buckets):
    """The four wallet buckets of a consumer at a merchant."""

    _owner_type = OwnerType.CONSUMER
    _kinds = (
        AccountKind.CONSUMER_PENDING,
        AccountKind.CONSUMER_AVAILABLE,
        AccountKind.CONSUMER_WITHDRAWING,
        AccountKind.CONSUMER_DEBT,
    )

    @property
    def pending(self) -> LedgerAccount:
        return self._bucket(AccountKind.CONSUMER_PENDING)

    @property
    def available(self) -> LedgerAccount:
        return self._bucket(AccountKind.CONSUMER_AVAILABLE)

    @property
    def withdrawing(self) -> LedgerAccount:
        return self._bucket(AccountKind.CONSUMER_WITHDRAWING)

    @property
    def debt(self) -> LedgerAccount:
        return self._bucket(AccountKind.CONSUMER_DEBT)


def prepaid_account(merchant_id: int, consumer_id: int) -> LedgerAccount:
    """What the consumer paid for personal red packets not yet handed to a friend (owed to them)."""
    return account_for(
        kind=AccountKind.CONSUMER_PREPAID,
        owner_type=OwnerType.CONSUMER,
        owner_id=consumer_id,
        merchant_id=merchant_id,
    )


def consumer_accounts(merchant_id: int, consumer_id: int) -> ConsumerAccounts:
    """The four wallet buckets of a consumer at a merchant (each looked up when first used)."""
    return ConsumerAccounts(consumer_id, merchant_id)


class MerchantAccounts(_Buckets):
    """A merchant's rebate (earned) and marketing budget accounts."""

    _owner_type = OwnerType.MERCHANT
    _kinds = (AccountKind.MERCHANT_REBATE, AccountKind.MERCHANT_BUDGET)

    @property
    def rebate(self) -> LedgerAccount:
        return self._bucket(AccountKind.MERCHANT_REBATE)

    @property
    def budget(self) -> LedgerAccount:
        return self._bucket(AccountKind.MERCHANT_BUDGET)


def merchant_accounts(merchant_id: int) -> MerchantAccounts:
    """A merchant's rebate (earned) and marketing budget accounts (each looked up when first used)."""
    return MerchantAccounts(merchant_id, merchant_id)


class CampaignAccounts(NamedTuple):
    budget: LedgerAccount
    reserved: LedgerAccount


def campaign_accounts(merchant_id: int, campaign_id: int) -> CampaignAccounts:
    """A campaign's free budget and the part reserved for live red packets' worst-case cost."""

    def bucket(kind: AccountKind) -> LedgerAccount:
        return account_for(
            kind=kind, owner_type=OwnerType.CAMPAIGN, owner_id=campaign_id, merchant_id=merchant_id
        )

    return CampaignAccounts(
        budget=bucket(AccountKind.CAMPAIGN_BUDGET), reserved=bucket(AccountKind.CAMPAIGN_RESERVED)
    )


def natural_key_of(kind: AccountKind, owner_id: Any, merchant_id: Any) -> ColumnElement[str]:
    """:func:`natural_key` as a SQL expression over columns (``owner_id``, ``merchant_id``): join an
    owner's account in the statement that reads the owner (a campaign and its budget in one read)."""
    return (
        literal(f"{OWNER_OF_KIND[kind].value}:")
        + sql_cast(owner_id, String)
        + literal(f":{kind.value}:")
        + sql_cast(merchant_id, String)
    )
