"""Posting balanced journal entries: idempotent on a caller-owned key, no overdraft, deadlock-free.

Every movement of money is one call to :func:`post_entry` inside the caller's transaction; the
caller commits. Entries and postings are only ever inserted. The overdraft guard is a conditional
``UPDATE … WHERE balance + delta >= 0`` per account, so it holds on every engine.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, cast

from sqlalchemy import BigInteger, Table, TextualSelect, bindparam, insert, or_, select, update
from sqlalchemy.orm.attributes import set_committed_value

from app.core.db import insert_unless_exists, utcnow
from app.core.errors import DomainError
from app.core.money import Money
from app.extensions import db
from app.ledger.models import EntryReason, JournalEntry, LedgerAccount, Posting

MAX_KEY_LENGTH = 120
MAX_TIMELINE_PAGE = 500


_entries = cast(Table, JournalEntry.__table__)
_accounts = cast(Table, LedgerAccount.__table__)
_DELTA = bindparam("delta", type_=BigInteger())
_MOVE_BALANCE = (
    update(_accounts)
    .where(
        _accounts.c.id == bindparam("account"),
        or_(_accounts.c.allow_negative, _accounts.c.balance + _DELTA >= 0),
    )
    .values(balance=_accounts.c.balance + _DELTA)
    .returning(_accounts.c.balance)
)
_UNDO_BALANCE = (
    update(_accounts)
    .where(_accounts.c.id == bindparam("account"))
    .values(balance=_accounts.c.balance - _DELTA)
)
_POSTINGS = insert(cast(Table, Posting.__table__))
_ENTRY_UNLESS_POSTED = (
    select(JournalEntry)
    .from_statement(
        insert_unless_exists(
            _entries,
            (
                "merchant_id",
                "idempotency_key",
                "reason",
                "cause_type",
                "cause_id",
                "rule_version_id",
                "memo",
                "created_at",
            ),
            key="idempotency_key",
            returning=[column.name for column in _entries.columns],
        )
        # A copy with this id left in the session by a rolled-back savepoint (SQLite reuses ids) is replaced.
    )
    .execution_options(populate_existing=True)
)


class Overdraft(DomainError):
    """An entry would take an account that may not go negative below zero; nothing was written."""

    status = 409
    code = "insufficient_funds"


class Account(Protocol):
    """What posting needs of an account: a :class:`LedgerAccount`, or an :class:`AccountRef` read with
    another row (a campaign's budget alongside the campaign)."""

    @property
    def id(self) -> int: ...

    @property
    def merchant_id(self) -> int | None: ...


class AccountRef(NamedTuple):
    id: int
    merchant_id: int | None


def _check_text(name: str, value: str, limit: int, *, required: bool = True) -> None:
    # PostgreSQL would refuse an over-long value, SQLite would silently keep it: refuse it the same way.
    if (required and not value) or len(value) > limit:
        raise ValueError(f"{name} must be 1..{limit} characters" if required else f"{name} exceeds {limit}")


def _validated(
    key: str,
    cause_type: str,
    cause_id: str,
    memo: str,
    lines: Sequence[tuple[Account, Money]],
    merchant_id: int | None,
) -> tuple[list[tuple[Account, Money]], dict[int, int]]:
    """The non-zero lines of one entry and its net delta per account id; raises for a bad entry."""
    _check_text("key", key, MAX_KEY_LENGTH)
    _check_text("cause_type", cause_type, 40)
    _check_text("cause_id", cause_id, 64)
    _check_text("memo", memo, 255, required=False)
    legs: list[tuple[Account, Money]] = []
    for account, amount in lines:
        if not isinstance(amount, Money):
            raise TypeError(f"ledger amounts are Money, not {type(amount).__name__}")
        if amount:
            legs.append((account, amount))
    if not legs:
        raise ValueError("an entry needs at least one non-zero line")
    if sum(amount.fen for _, amount in legs) != 0:
        raise ValueError(f"unbalanced entry {key!r}: lines sum to {sum(a.fen for _, a in legs)} fen")
    deltas: dict[int, int] = defaultdict(int)
    for account, amount in legs:
        if account.id is None:
            raise ValueError("ledger accounts must be persisted (use account_for)")
        # One entry never moves money between two tenants; platform accounts (no merchant) are shared.
        if account.merchant_id is not None and account.merchant_id != merchant_id:
            raise ValueError(
                f"account {account.id} belongs to merchant {account.merchant_id}, not {merchant_id}"
            )
        deltas[account.id] += amount.fen
    return legs, deltas


def post_entry(
    *,
    key: str,
    reason: EntryReason,
    cause_type: str,
    cause_id: str,
    lines: Sequence[tuple[LedgerAccount, Money]],
    merchant_id: int | None,
    rule_version_id: int | None = None,
    memo: str = "",
) -> JournalEntry | None:
    """Write one balanced entry and update the cached balances; None, changing nothing, if ``key`` was used.

    Raises ValueError for empty or unbalanced lines, :class:`Overdraft` when an account that may not go
    negative would; in both cases nothing is written.
    """
    legs, deltas = _validated(key, cause_type, cause_id, memo, lines, merchant_id)

    # Pending ORM changes first: the statements below are Core and would not flush them.
    db.session.flush()
    # The guard: one conditional UPDATE per account, in ascending id order (two entries touching the
    # same accounts lock them in the same order, so they queue instead of deadlocking). The database
    # re-checks ``balance + delta >= 0`` on the row it writes, on any engine and isolation level.
    applied: list[tuple[int, int]] = []
    for account_id in sorted(deltas):
        delta = deltas[account_id]
        if not delta:
            continue
        moved = db.session.execute(_MOVE_BALANCE, {"account": account_id, "delta": delta}).first()
        if moved is None:
            _undo(applied)
            for account, _ in legs:  # their balances in this session were set from the moves just undone
                db.session.expire(account, ["balance"])
            # A replay of an entry that already drained the account is a replay, not an overdraft.
            if find_entry(key) is not None:
                return None
            raise _overdraft(account_id, delta)
        applied.append((account_id, delta))
        for account, _ in legs:
            if account.id == account_id:
                set_committed_value(account, "balance", moved[0])

    now = utcnow()
    # The unique key decides between concurrent first posts of one key, without a read first.
    entry = db.session.scalars(
        _ENTRY_UNLESS_POSTED,
        {
            "merchant_id": merchant_id,
            "idempotency_key": key,
            "reason": reason,
            "cause_type": cause_type,
            "cause_id": cause_id,
            "rule_version_id": rule_version_id,
            "memo": memo,
            "created_at": now,
        },
    ).first()
    if entry is None:
        _undo(applied)  # posted before (or by a concurrent transaction that committed first)
        for account, _ in legs:
            db.session.expire(account, ["balance"])
        return None
    db.session.execute(
        _POSTINGS,  # on the table: the ORM's bulk insert machinery is not needed for rows never reloaded
        [
            {"entry_id": entry.id, "account_id": account.id, "amount": amount, "created_at": now}
            for account, amount in legs
        ],
    )
    return entry


# ---------------------------------------------------------------- several entries at once


@dataclass(frozen=True)
class Draft:
    """One balanced entry of a :class:`Batch` (the arguments of :func:`post_entry`)."""

    key: str
    reason: EntryReason
    cause_type: str
    cause_id: str
    lines: Sequence[tuple[Account, Money]]
    rule_version_id: int | None = None
    memo: str = ""


class AlreadyPosted(DomainError):
    """A batch's entry key was used before: the batch is a replay, and its caller must roll back."""

    status = 409
    code = "concurrent_conflict"


_ENTRY_COLUMNS = (
    "merchant_id",
    "idempotency_key",
    "reason",
    "cause_type",
    "cause_id",
    "rule_version_id",
    "memo",
    "created_at",
)
_ENTRIES_UNLESS_POSTED: dict[int, TextualSelect] = {}


def _entries_unless_posted(rows: int) -> TextualSelect:
    if rows not in _ENTRIES_UNLESS_POSTED:
        _ENTRIES_UNLESS_POSTED[rows] = insert_unless_exists(
            _entries, _ENTRY_COLUMNS, key="idempotency_key", returning=("id", "idempotency_key"), rows=rows
        )
    return _ENTRIES_UNLESS_POSTED[rows]


class Batch:
    """Several entries of one merchant written in three statements (entries, postings, then one
    conditional UPDATE per account), with every balance moved last.

    A hot account (a campaign's budget, wanted by every order at once) is then locked only from the
    batch's last statements to the commit, and every account a batch touches is locked in ascending id
    order, after everything else the transaction wrote. The guards are :func:`post_entry`'s: the unique
    entry keys and ``balance + delta >= 0``. Unlike :func:`post_entry`, a refused batch does not undo
    what it wrote: :meth:`write` raises :class:`Overdraft` or :class:`AlreadyPosted` and the caller rolls
    back (a savepoint around the batch and whatever else it booked).
    """

    def __init__(self, merchant_id: int) -> None:
        self.merchant_id = merchant_id
        self._drafts: list[tuple[Draft, list[tuple[Account, Money]]]] = []
        self._deltas: dict[int, int] = defaultdict(int)

    def __bool__(self) -> bool:
        return bool(self._drafts)

    def add(self, draft: Draft) -> None:
        """Queue ``draft`` (checked now: ValueError/TypeError as :func:`post_entry`)."""
        legs, deltas = _validated(
            draft.key, draft.cause_type, draft.cause_id, draft.memo, draft.lines, self.merchant_id
        )
        if any(queued.key == draft.key for queued, _ in self._drafts):
            raise ValueError(f"entry {draft.key!r} is already in this batch")
        self._drafts.append((draft, legs))
        for account_id, delta in deltas.items():
            self._deltas[account_id] += delta

    def write(self) -> None:
        """Insert the entries and their postings, then move every balance (ascending ids)."""
        if not self._drafts:
            return
        db.session.flush()  # pending ORM changes first: the statements below are Core
        now = utcnow()
        params: dict[str, object] = {}
        for i, (draft, _) in enumerate(self._drafts):
            suffix = "" if len(self._drafts) == 1 else f"_{i}"
            values = (
                self.merchant_id,
                draft.key,
                draft.reason,
                draft.cause_type,
                draft.cause_id,
                draft.rule_version_id,
                draft.memo,
                now,
            )
            params |= {
                f"{column}{suffix}": value for column, value in zip(_ENTRY_COLUMNS, values, strict=True)
            }
        ids = dict(
            (key, entry_id)
            for entry_id, key in db.session.execute(_entries_unless_posted(len(self._drafts)), params)
        )
        if len(ids) != len(self._drafts):
            posted = sorted(draft.key for draft, _ in self._drafts if draft.key not in ids)
            raise AlreadyPosted(f"entries already posted: {', '.join(posted)}")
        db.session.execute(
            _POSTINGS,
            [
                {"entry_id": ids[draft.key], "account_id": account.id, "amount": amount, "created_at": now}
                for draft, legs in self._drafts
                for account, amount in legs
            ],
        )
        for account_id in sorted(self._deltas):
            delta = self._deltas[account_id]
            if not delta:
                continue
            moved = db.session.execute(_MOVE_BALANCE, {"account": account_id, "delta": delta}).first()
            if moved is None:
                raise _overdraft(account_id, delta)
            # An account object of this session (a campaign's budget read earlier) shows the new balance.
            loaded = db.session.identity_map.get(db.session.identity_key(LedgerAccount, account_id))
            if loaded is not None:
                set_committed_value(loaded, "balance", moved[0])


def _undo(applied: list[tuple[int, int]]) -> None:
    """Take back balance moves made earlier in this call (the rows are still ours: we wrote them)."""
    for account_id, delta in applied:
        db.session.execute(_UNDO_BALANCE, {"account": account_id, "delta": delta})


def _overdraft(account_id: int, delta: int) -> Overdraft:
    account = db.session.scalars(
        select(LedgerAccount).where(LedgerAccount.id == account_id).execution_options(populate_existing=True)
    ).one()
    return Overdraft(
        f"{account.kind.value} account {account.id} holds {account.balance.fen} fen; {-delta} fen requested",
        details={
            "account_id": account.id,
            "kind": account.kind.value,
            "balance_fen": account.balance.fen,
            "shortfall_fen": -(account.balance.fen + delta),
        },
    )


def find_entry(key: str) -> JournalEntry | None:
    """The entry posted under ``key``, if any."""
    return db.session.scalar(select(JournalEntry).where(JournalEntry.idempotency_key == key))


def balance(account: LedgerAccount) -> Money:
    """The account's balance as stored now (the cached sum of its postings)."""
    return db.session.scalars(select(LedgerAccount.balance).where(LedgerAccount.id == account.id)).one()


def postings_of(entry: JournalEntry) -> list[Posting]:
    """The legs of ``entry`` in the order they were posted."""
    return list(db.session.scalars(select(Posting).where(Posting.entry_id == entry.id).order_by(Posting.id)))


@dataclass(frozen=True)
class TimelineItem:
    entry: JournalEntry
    postings: list[Posting]  # only the legs on the accounts asked for

    @property
    def net(self) -> Money:
        """What the entry did to the accounts asked for, taken together."""
        return Money(sum(posting.amount.fen for posting in self.postings))


@dataclass(frozen=True)
class TimelinePage:
    items: list[TimelineItem]
    next_cursor: int | None  # pass back as ``cursor`` for the next (older) page


def entries_for(account_ids: Sequence[int], limit: int = 50, cursor: int | None = None) -> TimelinePage:
    """Entries touching any of ``account_ids``, newest first, ``limit`` per page.

    Pass the previous page's ``next_cursor`` as ``cursor`` for the next (older) page.
    """
    if not 1 <= limit <= MAX_TIMELINE_PAGE:
        raise ValueError(f"limit must be 1..{MAX_TIMELINE_PAGE}")
    ids = sorted(set(account_ids))
    if not ids:
        return TimelinePage(items=[], next_cursor=None)
    # Keyset pagination on the entry id: stable while new entries arrive, cheap at any depth.
    page_query = select(Posting.entry_id).where(Posting.account_id.in_(ids)).distinct()
    if cursor is not None:
        page_query = page_query.where(Posting.entry_id < cursor)
    entry_ids = list(db.session.scalars(page_query.order_by(Posting.entry_id.desc()).limit(limit + 1)))
    more = len(entry_ids) > limit
    entry_ids = entry_ids[:limit]
    if not entry_ids:
        return TimelinePage(items=[], next_cursor=None)
    entries = db.session.scalars(
        select(JournalEntry).where(JournalEntry.id.in_(entry_ids)).order_by(JournalEntry.id.desc())
    ).all()
    legs: dict[int, list[Posting]] = defaultdict(list)
    for posting in db.session.scalars(
        select(Posting)
        .where(Posting.entry_id.in_(entry_ids), Posting.account_id.in_(ids))
        .order_by(Posting.id)
    ):
        legs[posting.entry_id].append(posting)
    return TimelinePage(
        items=[TimelineItem(entry=entry, postings=legs[entry.id]) for entry in entries],
        next_cursor=entry_ids[-1] if more else None,
    )
