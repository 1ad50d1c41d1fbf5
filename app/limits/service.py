"""Taking from a limit with one conditional UPDATE on its counter row, so concurrent requests can never
pass it together (a sum over rows, then a comparison, lets every concurrent request see the same sum)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Executable,
    Table,
    and_,
    bindparam,
    or_,
    select,
    text,
    update,
)

from app.core.db import insert_unless_exists, utcnow
from app.extensions import db
from app.limits.models import LimitCounter

WITHDRAWAL_DAILY_FEN = "withdrawal.daily_fen"  # subject: the consumer; window: the Beijing day
# A campaign's rebates to one buyer (scope: the campaign; subject: the buyer), per Beijing day, ISO week
# (from Monday) and month: the per-user caps of its rules. Counted for every buyer grant, capped or not,
# so a cap added by a later rules version starts from what was really granted.
BUYER_DAY_FEN = "campaign.buyer_day_fen"
BUYER_WEEK_FEN = "campaign.buyer_week_fen"
BUYER_MONTH_FEN = "campaign.buyer_month_fen"
UNLIMITED = 2**62  # the limit of a counter kept without a cap (still far from BIGINT's end)

_counters = cast(Table, LimitCounter.__table__)
_IDENTITY = ("merchant_id", "name", "scope_id", "subject_id", "window_start")
_CREATE_UNLESS_EXISTS = insert_unless_exists(_counters, (*_IDENTITY, "used", "updated_at"), key=_IDENTITY)
_AMOUNT = bindparam("amount", type_=BigInteger())


def _this_counter(suffix: str = "") -> ColumnElement[bool]:
    # Prefixed names: an UPDATE reserves the bare column names for its SET clause.
    return and_(*(_counters.c[name] == bindparam(f"w_{name}{suffix}") for name in _IDENTITY))


_TAKE = (
    update(_counters)
    .where(_this_counter(), _counters.c.used + _AMOUNT <= bindparam("limit", type_=BigInteger()))
    .values(used=_counters.c.used + _AMOUNT, updated_at=bindparam("now"))
    .returning(_counters.c.used)
)
_GIVE_BACK = (
    update(_counters)
    .where(_this_counter(), _counters.c.used >= _AMOUNT)
    .values(used=_counters.c.used - _AMOUNT, updated_at=bindparam("now"))
)
_USED = select(_counters.c.used).where(_this_counter())


@dataclass(frozen=True)
class Window:
    """One counter of a subject: its limit's name, its scope, where its window starts, and the limit."""

    name: str
    window_start: datetime
    limit: int = UNLIMITED
    scope_id: int = 0


def take(
    *,
    merchant_id: int,
    name: str,
    subject_id: int,
    window_start: datetime,
    amount: int,
    limit: int,
    scope_id: int = 0,
) -> int | None:
    """Add ``amount`` to the counter if it stays within ``limit``: the new total used, or None (nothing
    changed). The counter row is created on first use; the UPDATE's condition is the guard."""
    now = utcnow()
    identity = (merchant_id, name, scope_id, subject_id, window_start)
    db.session.execute(
        _CREATE_UNLESS_EXISTS, dict(zip(_IDENTITY, identity, strict=True)) | {"used": 0, "updated_at": now}
    )
    row = db.session.execute(
        _TAKE, _where(*identity) | {"amount": amount, "limit": limit, "now": now}
    ).first()
    return None if row is None else int(row[0])


def take_all(*, merchant_id: int, subject_id: int, amount: int, windows: Sequence[Window]) -> bool:
    """Add ``amount`` to several counters of one subject, each within its limit — all or none: False
    (nothing changed) if any would pass its limit. Two statements whatever the number of windows."""
    if not windows:
        return True
    now = utcnow()
    rows = [(merchant_id, w.name, w.scope_id, subject_id, w.window_start) for w in windows]
    db.session.execute(_create_all(len(rows)), _numbered(rows) | {"used": 0, "now": now})
    taken = db.session.execute(
        _take_all(len(rows)),
        _numbered(rows, prefix="w_")
        | {f"limit{i}": w.limit for i, w in enumerate(windows)}
        | {"amount": amount, "now": now},
    ).all()
    if len(taken) == len(rows):
        return True
    for name, scope_id, window_start in taken:  # undo the ones that did move: the rows are ours now
        give_back(
            merchant_id=merchant_id,
            name=name,
            scope_id=scope_id,
            subject_id=subject_id,
            window_start=window_start,
            amount=amount,
        )
    return False


def give_back(
    *, merchant_id: int, name: str, subject_id: int, window_start: datetime, amount: int, scope_id: int = 0
) -> bool:
    """Return ``amount`` to the counter (a refused or rejected use); False if the counter held less."""
    where = _where(merchant_id, name, scope_id, subject_id, window_start)
    result = db.session.execute(_GIVE_BACK, where | {"amount": amount, "now": utcnow()})
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def used(*, merchant_id: int, name: str, subject_id: int, window_start: datetime, scope_id: int = 0) -> int:
    """What the counter holds now (0 if it was never used)."""
    where = _where(merchant_id, name, scope_id, subject_id, window_start)
    return int(db.session.execute(_USED, where).scalar() or 0)


def _where(
    merchant_id: int, name: str, scope_id: int, subject_id: int, window_start: datetime
) -> dict[str, object]:
    values = (merchant_id, name, scope_id, subject_id, window_start)
    return {f"w_{column}": value for column, value in zip(_IDENTITY, values, strict=True)}


def _numbered(rows: Sequence[tuple[object, ...]], prefix: str = "") -> dict[str, object]:
    return {
        f"{prefix}{column}{i}": value
        for i, row in enumerate(rows)
        for column, value in zip(_IDENTITY, row, strict=True)
    }


_CREATE_ALL: dict[int, Executable] = {}
_TAKE_ALL: dict[int, Executable] = {}


def _create_all(n: int) -> Executable:
    """``INSERT … VALUES (…), (…) ON CONFLICT DO NOTHING`` for ``n`` counters (built once per ``n``)."""
    if n not in _CREATE_ALL:
        columns = [*_IDENTITY, "used", "updated_at"]
        values = ", ".join(
            "(" + ", ".join([*(f":{c}{i}" for c in _IDENTITY), ":used", ":now"]) + ")" for i in range(n)
        )
        quoted = ", ".join(f'"{c}"' for c in columns)
        conflict = ", ".join(f'"{c}"' for c in _IDENTITY)
        _CREATE_ALL[n] = text(
            f"INSERT INTO limit_counters ({quoted}) VALUES {values} "  # noqa: S608 - identifiers are ours
            f"ON CONFLICT ({conflict}) DO NOTHING"
        ).bindparams(
            *(bindparam(f"{c}{i}", type_=_counters.c[c].type) for i in range(n) for c in _IDENTITY),
            bindparam("now", type_=_counters.c.updated_at.type),
        )
    return _CREATE_ALL[n]


def _take_all(n: int) -> Executable:
    """One UPDATE over ``n`` counters, each only within its own limit, returning the ones it moved."""
    if n not in _TAKE_ALL:
        _TAKE_ALL[n] = (
            update(_counters)
            .where(
                or_(
                    *(
                        and_(
                            _this_counter(str(i)),
                            _counters.c.used + _AMOUNT <= bindparam(f"limit{i}", type_=BigInteger()),
                        )
                        for i in range(n)
                    )
                )
            )
            .values(used=_counters.c.used + _AMOUNT, updated_at=bindparam("now"))
            .returning(_counters.c.name, _counters.c.scope_id, _counters.c.window_start)
        )
    return _TAKE_ALL[n]
