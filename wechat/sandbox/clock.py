"""Sandbox time: a business clock tests can advance, plus a scheduler of timed events.

Two notions of time (see docs/sandbox.md "Clock"):
- ``now()`` drives state machines, expiries and the notification retry schedule. Tests freeze and advance it.
- ``wall()`` stamps protocol headers (``Wechatpay-Timestamp``) and is the reference for the ±300 s request
  window (§3.2/§3.3), because real clients sign with their own wall clock; advancing business time must not
  make every signature "stale".
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

CST = dt.timezone(dt.timedelta(hours=8), name="CST")


class Clock:
    """Business clock: ``start + offset`` (+ real elapsed time unless frozen). Thread-safe."""

    def __init__(
        self,
        start: float | None = None,
        *,
        frozen: bool = False,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._wall = wall
        self._start = wall() if start is None else float(start)
        self._origin = time.monotonic()
        self._offset = 0.0
        self._frozen = frozen
        self._lock = threading.Lock()

    def now(self) -> float:
        """Business time, Unix seconds."""
        with self._lock:
            elapsed = 0.0 if self._frozen else time.monotonic() - self._origin
            return self._start + self._offset + elapsed

    def wall(self) -> float:
        """Protocol time, Unix seconds (real time unless injected)."""
        return self._wall()

    def advance(self, seconds: float) -> None:
        """Move business time forward (never backwards)."""
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._offset += seconds

    def set_to(self, target: float) -> None:
        """Jump forward to ``target`` if it is in the future."""
        current = self.now()
        if target > current:
            self.advance(target - current)

    @property
    def frozen(self) -> bool:
        return self._frozen


def rfc3339(ts: float) -> str:
    """WeChat's v3 time format, e.g. ``2018-06-08T10:34:56+08:00`` (§0.4)."""
    return dt.datetime.fromtimestamp(int(ts), CST).isoformat()


def parse_rfc3339(text: str) -> float:
    """Inverse of :func:`rfc3339` (any offset)."""
    return dt.datetime.fromisoformat(text).timestamp()


def cst_format(ts: float, fmt: str) -> str:
    """Format a timestamp in Beijing time (v2 fields, bills)."""
    return dt.datetime.fromtimestamp(int(ts), CST).strftime(fmt)


@dataclass(order=True)
class _Timer:
    due: float
    seq: int
    action: Callable[[], None] = field(compare=False)
    label: str = field(compare=False, default="")


class Scheduler:
    """Timed actions due at business times; ``run_due`` fires them in order, outside any lock they need."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._heap: list[_Timer] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._run_lock = threading.RLock()  # an action may re-enter (in-process merchant calling back)

    def at(self, due: float, action: Callable[[], None], label: str = "") -> None:
        """Run ``action`` once business time reaches ``due``."""
        with self._lock:
            heapq.heappush(self._heap, _Timer(due, next(self._seq), action, label))

    def pending(self) -> list[tuple[float, str]]:
        """(due, label) of every pending timer, earliest first."""
        with self._lock:
            return [(t.due, t.label) for t in sorted(self._heap)]

    def _pop_due(self, limit: float) -> _Timer | None:
        with self._lock:
            if self._heap and self._heap[0].due <= limit:
                return heapq.heappop(self._heap)
            return None

    def run_due(self) -> int:
        """Fire every timer due now (including ones they schedule for now). Returns how many ran."""
        count = 0
        with self._run_lock:
            while (timer := self._pop_due(self._clock.now())) is not None:
                timer.action()
                count += 1
        return count

    def advance(self, seconds: float) -> int:
        """Advance the clock, stopping at each due timer so actions observe their own due time."""
        target = self._clock.now() + seconds
        count = 0
        with self._run_lock:
            while (timer := self._pop_due(target)) is not None:
                self._clock.set_to(timer.due)
                timer.action()
                count += 1
            self._clock.set_to(target)
        return count
