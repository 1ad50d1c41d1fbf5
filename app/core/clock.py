"""Business time: real time, plus — outside production only — the development clock's offset.

Every process of one deployment (web, worker, CLI) reads the offset from the queue Redis
(``<queue.prefix>:dev-clock:offset-seconds``), so they agree. A production app never installs a
:class:`DevClock`, so the offset cannot apply there even if the key exists. See docs/development-clock.md.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import redis
from flask import Flask, current_app, has_app_context

from app.settings import Env, Settings

logger = logging.getLogger("hongli.clock")

EXTENSION_KEY = "hongli.dev_clock"
ZERO = timedelta(0)
# How stale a process's copy of the offset may be. `flask dev clock advance` waits this long before it
# moves the sandbox, so WeChat's (the sandbox's) callbacks find every process on the new time.
CACHE_SECONDS = 1.0

# False in every process that never built a non-production app (production): utcnow() then costs one
# global lookup more than datetime.now().
_installed = False


class DevClock:
    """The offset of business time over real time, shared through Redis, cached ``CACHE_SECONDS``."""

    def __init__(self, connection: redis.Redis, key: str) -> None:
        self._redis = connection
        self.key = key
        self._offset = ZERO
        self._fresh_until = 0.0  # time.monotonic() until which _offset is trusted
        self._failing = False
        self._lock = threading.Lock()

    def offset(self) -> timedelta:
        """The current offset (at most ``CACHE_SECONDS`` old); zero while Redis cannot be read."""
        if time.monotonic() >= self._fresh_until:
            self._refresh()
        return self._offset

    def read(self) -> timedelta:
        """The offset as Redis holds it now (no cache); raises ``redis.RedisError``."""
        raw = self._redis.get(self.key)
        return timedelta(seconds=int(raw)) if raw is not None else ZERO

    def advance(self, seconds: int) -> timedelta:
        """Move business time forward by ``seconds`` (atomically, for every process); the new offset."""
        if seconds <= 0:
            raise ValueError("the development clock only moves forward")
        total = int(self._redis.incrby(self.key, seconds))
        return self._remember(timedelta(seconds=total))

    def reset(self) -> None:
        """Back to real time (offset zero) for every process."""
        self._redis.delete(self.key)
        self._remember(ZERO)

    def _remember(self, offset: timedelta) -> timedelta:
        with self._lock:
            self._offset = offset
            self._fresh_until = time.monotonic() + CACHE_SECONDS
        return offset

    def _refresh(self) -> None:
        try:
            offset = self.read()
        except (redis.RedisError, ValueError) as exc:
            # Development only: keep the last known offset rather than fail every request; retry later.
            if not self._failing:
                logger.warning(
                    "development clock: cannot read %s (%s); keeping %s", self.key, exc, self._offset
                )
                self._failing = True
            with self._lock:
                self._fresh_until = time.monotonic() + CACHE_SECONDS
            return
        self._failing = False
        self._remember(offset)


def init_dev_clock(app: Flask, settings: Settings) -> None:
    """Install the development clock on a non-production app; production gets none."""
    global _installed
    if settings.env is Env.PRODUCTION:
        return
    from app.queue.queues import get_redis

    app.extensions[EXTENSION_KEY] = DevClock(
        get_redis(app), f"{settings.queue.prefix}:dev-clock:offset-seconds"
    )
    _installed = True


def dev_clock(app: Flask | None = None) -> DevClock | None:
    """The app's development clock, or None (production)."""
    clock = (app or current_app).extensions.get(EXTENSION_KEY)
    return clock if isinstance(clock, DevClock) else None


def business_offset() -> timedelta:
    """What :func:`app.core.db.utcnow` adds to real time: zero in production and outside an app."""
    if not _installed or not has_app_context():
        return ZERO
    clock = current_app.extensions.get(EXTENSION_KEY)
    return ZERO if clock is None else clock.offset()
