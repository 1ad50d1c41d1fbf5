"""Reading the audit log: one merchant's entries, newest first, by keyset pagination."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from app.audit.models import AuditEntry
from app.core.errors import InvalidInput
from app.core.inputs import ID_MAX
from app.extensions import db

MAX_PAGE = 200


@dataclass(frozen=True)
class AuditPage:
    items: list[AuditEntry]
    next_cursor: str | None


def _decode_cursor(cursor: str) -> int:
    # The cursor is the id of the last entry seen; clients treat it as opaque.
    # ASCII digits only: str.isdigit() also accepts '²', which int() refuses.
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 19 and int(cursor) <= ID_MAX):
        raise InvalidInput("not a cursor from a previous page", details={"field": "cursor"})
    return int(cursor)


def list_audit_entries(*, merchant_id: int, limit: int = 50, cursor: str | None = None) -> AuditPage:
    """Up to ``limit`` entries of the merchant older than ``cursor``; ``next_cursor`` is None at the end."""
    limit = max(1, min(limit, MAX_PAGE))
    query = select(AuditEntry).where(AuditEntry.merchant_id == merchant_id)
    if cursor:
        query = query.where(AuditEntry.id < _decode_cursor(cursor))
    rows = list(db.session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    items = rows[:limit]
    return AuditPage(items=items, next_cursor=str(items[-1].id) if more else None)
