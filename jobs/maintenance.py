"""Housekeeping jobs."""

from __future__ import annotations

from datetime import UTC, datetime

from app.queue.heartbeat import HEARTBEAT_TTL_SECONDS, heartbeat_key
from app.queue.queues import get_redis


def record_heartbeat() -> str:
    """Write the time the periodic scheduler and a worker last proved alive; ``/readyz`` reports it."""
    now = datetime.now(UTC).isoformat()
    get_redis().set(heartbeat_key(), now, ex=HEARTBEAT_TTL_SECONDS)
    return now
