"""Beijing-time windows (UTC+8, no daylight saving): where a day, an ISO week and a month begin.

Limits and caps reset at Beijing midnight; every start is returned as an aware UTC datetime.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

BEIJING = timedelta(hours=8)


def beijing_day_start(now: datetime) -> datetime:
    """00:00 Beijing time of ``now``'s Beijing day, in UTC."""
    local = now.astimezone(UTC) + BEIJING
    return datetime(local.year, local.month, local.day, tzinfo=UTC) - BEIJING


def beijing_week_start(now: datetime) -> datetime:
    """00:00 Beijing time of the Monday of ``now``'s ISO week (in Beijing), in UTC."""
    day = beijing_day_start(now)
    return day - timedelta(days=(day + BEIJING).weekday())


def beijing_month_start(now: datetime) -> datetime:
    """00:00 Beijing time of the first day of ``now``'s month (in Beijing), in UTC."""
    local = now.astimezone(UTC) + BEIJING
    return datetime(local.year, local.month, 1, tzinfo=UTC) - BEIJING
