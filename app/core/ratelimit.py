"""Fixed-window counters in Redis for abuse limits (shared by every web process)."""

from __future__ import annotations

import time

from flask import current_app

from app.core.errors import RateLimited
from app.queue.queues import get_redis


def hit(bucket: str, *, limit: int, window_seconds: int, now: float | None = None) -> None:
    """Count one attempt in ``bucket``; raise RateLimited (with Retry-After) past ``limit`` per window."""
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
        retry_after = max(1, int((window + 1) * window_seconds - moment))
        raise RateLimited("too many attempts; try again later", retry_after_seconds=retry_after)
