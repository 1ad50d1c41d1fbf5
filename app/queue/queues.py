"""Named queues and the shared Redis connection (one per app, stored in ``app.extensions``)."""

from __future__ import annotations

from enum import StrEnum

import redis
from flask import Flask, current_app
from rq import Queue

from app.settings import Settings

_REDIS = "hongli.redis"


class QueueName(StrEnum):
    """Every queue Hongli uses; workers listen to them in this order of priority."""

    PAYOUTS = "payouts"
    NOTIFICATIONS = "notifications"
    DEFAULT = "default"
    SWEEPS = "sweeps"


def init_queue(app: Flask, settings: Settings) -> None:
    """Create (without connecting) the Redis client RQ and the app share."""
    app.extensions[_REDIS] = redis.Redis.from_url(settings.redis.url, health_check_interval=30)


def get_redis(app: Flask | None = None) -> redis.Redis:
    connection: redis.Redis = (app or current_app).extensions[_REDIS]
    return connection


def queue_key(settings: Settings, name: QueueName) -> str:
    return f"{settings.queue.prefix}-{name.value}"


def get_queue(
    name: QueueName = QueueName.DEFAULT, app: Flask | None = None, connection: redis.Redis | None = None
) -> Queue:
    """The RQ queue ``name`` of this deployment (queue names carry the configured prefix)."""
    flask_app = app or current_app
    settings: Settings = flask_app.extensions["hongli.settings"]
    return Queue(
        queue_key(settings, name),
        connection=connection or get_redis(flask_app),
        default_timeout=settings.queue.job_timeout_seconds,
    )
