"""Where the worker heartbeat lives in Redis (written by ``jobs.maintenance.record_heartbeat``)."""

from __future__ import annotations

from datetime import datetime

from flask import Flask, current_app

from app.queue.queues import get_redis

HEARTBEAT_TTL_SECONDS = 600


def heartbeat_key(app: Flask | None = None) -> str:
    return f"{(app or current_app).extensions['hongli.settings'].queue.prefix}:worker-heartbeat"


def last_heartbeat(app: Flask | None = None) -> datetime | None:
    """When a worker last ran the heartbeat job, or None if not within the TTL."""
    raw = get_redis(app).get(heartbeat_key(app))
    if not raw:
        return None
    return datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else str(raw))
