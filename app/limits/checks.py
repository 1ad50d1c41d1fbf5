"""Limit counters proven against the rows they count, as a ledger check (``flask --app wsgi ledger check``).

A counter is only a guard if it says what its rows say: every ``limit_counters`` row must equal the sum its
limit's rule derives from the rows (e.g. the day's withdrawals), and every row the limit counts must lie in a
counter. Each limit name has a :class:`Rule`, registered by the domain whose rows it counts
(:func:`register_limit`); a counter whose name has none is a violation, so a new limit cannot go unchecked.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from app.extensions import db
from app.ledger.checks import MAX_LISTED, register_check
from app.limits.models import LimitCounter

# (merchant, scope, subject, window start) → what the rows say was used in that window.
Window = tuple[int, int, int, datetime]


@dataclass(frozen=True)
class Rule:
    """How one limit's counters are derived: the window a moment falls in, and each counted row's
    (merchant, scope, subject, moment, amount)."""

    window_of: Callable[[datetime], datetime]
    rows: Callable[[], Iterator[tuple[int, int, int, datetime, int]]]
    counted: str  # what a row is, for the message


# Each limit's rule, registered by the domain that owns the rows it counts (at start-up, in create_app).
_RULES: dict[str, Rule] = {}


def register_limit(name: str, rule: Rule) -> None:
    """Say how the counters of limit ``name`` are derived from their rows (idempotent: replaces)."""
    _RULES[name] = rule


def _derived(rule: Rule) -> tuple[dict[Window, int], dict[Window, int]]:
    """(fen, rows) per window, summed in Python: a day in Beijing time is date arithmetic that SQLite
    and PostgreSQL spell differently. Memory grows with the windows, not the rows."""
    fen: dict[Window, int] = defaultdict(int)
    count: dict[Window, int] = defaultdict(int)
    for merchant_id, scope_id, subject_id, at, amount in rule.rows():
        window = (merchant_id, scope_id, subject_id, rule.window_of(at))
        fen[window] += int(amount)
        count[window] += 1
    return fen, count


def counters_match_rows() -> list[str]:
    """Every counter has a known limit, starts on a window boundary and equals what its rows say; every
    counted row lies in a counter."""
    violations: list[str] = []
    counters: dict[str, dict[Window, tuple[int, int]]] = defaultdict(dict)
    for counter_id, merchant_id, name, scope_id, subject_id, window_start, used in db.session.execute(
        select(
            LimitCounter.id,
            LimitCounter.merchant_id,
            LimitCounter.name,
            LimitCounter.scope_id,
            LimitCounter.subject_id,
            LimitCounter.window_start,
            LimitCounter.used,
        ).order_by(LimitCounter.id)
    ):
        rule = _RULES.get(name)
        if rule is None:
            violations.append(f"counter {counter_id}: limit {name!r} has no rule to check it against")
            continue
        if rule.window_of(window_start) != window_start:
            violations.append(
                f"counter {counter_id} ({name}): window {window_start.isoformat()} is not a window start"
            )
        counters[name][(merchant_id, scope_id, subject_id, window_start)] = (counter_id, int(used))

    for name, rule in _RULES.items():
        fen, count = _derived(rule)
        for window, (counter_id, used) in counters[name].items():
            if used != fen.get(window, 0):
                violations.append(
                    f"counter {counter_id} ({name}, merchant {window[0]}, scope {window[1]}, subject {window[2]}, "
                    f"{window[3].isoformat()}): used {used}, its {count.get(window, 0)} {rule.counted} "
                    f"sum to {fen.get(window, 0)}"
                )
        for window in sorted(set(fen) - set(counters[name])):
            merchant_id, scope_id, subject_id, start = window
            violations.append(
                f"{name}: {count[window]} {rule.counted} of subject {subject_id} at merchant {merchant_id} "
                f"(scope {scope_id}) on {start.isoformat()} ({fen[window]}) lie in no counter"
            )
        if len(violations) > MAX_LISTED:
            break
    return _capped(violations)


def _capped(rows: list[str]) -> list[str]:
    if len(rows) > MAX_LISTED:
        return [*rows[:MAX_LISTED], "… more not listed"]
    return rows


def register() -> None:
    """Add the limit checks to ``ledger check`` (idempotent: re-registering replaces)."""
    register_check("limits.counters_match_rows", counters_match_rows)
