"""Risk control's sweep: the Redis cache of linked-account groups written again from the database."""

from __future__ import annotations

from app.risk.links import refresh_group_cache


def refresh_groups() -> int:
    """Every linked group's members and size cached again (Redis is the fast path, the database the record)."""
    return refresh_group_cache()
