"""Fixed-window counters in Redis for abuse limits (shared by every web process)."""

from __future__ import annotations

import time

from flask import current_app

from app.core.errors import RateLimited
from app.queue.queues import get_redis


def hit(bucket: str, *, limit: int, window_seconds: int, now: float | None = None) -> None:
    """Count one attempt in ``bucket``; raise RateLimited (with Retry-After) past ``limit`` per window."""
    wait = take(bucket, limit=limit, window_seconds=window_seconds, now=now)
    if wait is not None:
        raise RateLimited("too many attempts; try again later", retry_after_seconds=max(1, int(wait)))


def take(bucket: str, *, limit: int, window_seconds: int, now: float | None = None) -> float | None:
    """Count one use of ``bucket``: None if within ``limit`` this window, else the seconds until the next
    window (the use is not granted; callers wait rather than fail, e.g. WeChat's red-packet rate)."""
    moment = time.time() if now is None else now
    window = int(moment // window_seconds)
    prefix = current_app.extensions["hongli.settings"].queue.prefix
    key = f"{prefix}:ratelimit:{bucket}:{window}"
    redis = get_redis()
    pipe = redis.pipeline()
    pipe.incr(key)
    pipe.expire(key, window_seconds + 1)
    count = int(pipe.execute()[0])
    if count > limit:
        return (window + 1) * window_seconds - moment
    return None
