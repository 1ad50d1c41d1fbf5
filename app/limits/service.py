"""Taking from a limit with one conditional UPDATE on its counter row, so concurrent requests can never
pass it together (a sum over rows, then a comparison, lets every concurrent request see the same sum)."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import BigInteger, ColumnElement, Table, bindparam, select, update

from app.core.db import insert_unless_exists, utcnow
from app.extensions import db
from app.limits.models import LimitCounter

WITHDRAWAL_DAILY_FEN = "withdrawal.daily_fen"  # subject: the consumer; window: the Beijing day

_counters = cast(Table, LimitCounter.__table__)
_IDENTITY = ("merchant_id", "name", "subject_id", "window_start")
_CREATE_UNLESS_EXISTS = insert_unless_exists(_counters, (*_IDENTITY, "used", "updated_at"), key=_IDENTITY)
_AMOUNT = bindparam("amount", type_=BigInteger())


def _this_counter() -> list[ColumnElement[bool]]:
    # Prefixed names: an UPDATE reserves the bare column names for its SET clause.
    return [_counters.c[name] == bindparam(f"w_{name}") for name in _IDENTITY]


_TAKE = (
    update(_counters)
    .where(*_this_counter(), _counters.c.used + _AMOUNT <= bindparam("limit", type_=BigInteger()))
    .values(used=_counters.c.used + _AMOUNT, updated_at=bindparam("now"))
    .returning(_counters.c.used)
)
_GIVE_BACK = (
    update(_counters)
    .where(*_this_counter(), _counters.c.used >= _AMOUNT)
    .values(used=_counters.c.used - _AMOUNT, updated_at=bindparam("now"))
)
_USED = select(_counters.c.used).where(*_this_counter())


def take(
    *, merchant_id: int, name: str, subject_id: int, window_start: datetime, amount: int, limit: int
) -> int | None:
    """Add ``amount`` to the counter if it stays within ``limit``: the new total used, or None (nothing
    changed). The counter row is created on first use; the UPDATE's condition is the guard."""
    now = utcnow()
    identity = (merchant_id, name, subject_id, window_start)
    db.session.execute(
        _CREATE_UNLESS_EXISTS, dict(zip(_IDENTITY, identity, strict=True)) | {"used": 0, "updated_at": now}
    )
    row = db.session.execute(
        _TAKE, _where(*identity) | {"amount": amount, "limit": limit, "now": now}
    ).first()
    return None if row is None else int(row[0])


def give_back(*, merchant_id: int, name: str, subject_id: int, window_start: datetime, amount: int) -> bool:
    """Return ``amount`` to the counter (a refused or rejected use); False if the counter held less."""
    where = _where(merchant_id, name, subject_id, window_start)
    result = db.session.execute(_GIVE_BACK, where | {"amount": amount, "now": utcnow()})
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def used(*, merchant_id: int, name: str, subject_id: int, window_start: datetime) -> int:
    """What the counter holds now (0 if it was never used)."""
    return int(db.session.execute(_USED, _where(merchant_id, name, subject_id, window_start)).scalar() or 0)


def _where(merchant_id: int, name: str, subject_id: int, window_start: datetime) -> dict[str, object]:
    values = (merchant_id, name, subject_id, window_start)
    return {f"w_{column}": value for column, value in zip(_IDENTITY, values, strict=True)}
