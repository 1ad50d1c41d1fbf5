"""Worker heartbeats in Redis.

Every worker process writes, every ``queue.worker_heartbeat_seconds``, one key per queue it listens to
(:class:`HeartbeatWriter`, a thread of the worker's main process); ``/readyz`` is ready only when every
queue has one younger than ``queue.worker_heartbeat_max_age_seconds``. Separately, the periodic
``jobs.maintenance.record_heartbeat`` job records when a worker last *ran* a job from the scheduler
(``worker_heartbeat`` in ``/readyz``, informational).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import UTC, datetime

from flask import Flask, current_app

from app.queue.queues import QueueName, get_redis

HEARTBEAT_TTL_SECONDS = 600
logger = logging.getLogger("hongli.worker")


def heartbeat_key(app: Flask | None = None) -> str:
    return f"{(app or current_app).extensions['hongli.settings'].queue.prefix}:worker-heartbeat"


def queue_heartbeat_key(app: Flask, queue: QueueName) -> str:
    return f"{app.extensions['hongli.settings'].queue.prefix}:worker-alive:{queue.value}"


def last_heartbeat(app: Flask | None = None) -> datetime | None:
    """When a worker last ran the heartbeat job, or None if not within the TTL."""
    raw = get_redis(app).get(heartbeat_key(app))
    if not raw:
        return None
    return datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else str(raw))


def beat(app: Flask, queues: Iterable[QueueName], now: datetime | None = None) -> None:
    """Record that a worker listening to ``queues`` is alive now (one key per queue, expiring)."""
    settings = app.extensions["hongli.settings"].queue
    stamp = (now or datetime.now(UTC)).isoformat()
    ttl = max(settings.worker_heartbeat_max_age_seconds, settings.worker_heartbeat_seconds) * 2
    with get_redis(app).pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.set(queue_heartbeat_key(app, queue), stamp, ex=ttl)
        pipe.execute()


def worker_heartbeats(app: Flask) -> dict[str, datetime]:
    """The latest worker heartbeat of each queue that has one."""
    names = list(QueueName)
    raw = get_redis(app).mget([queue_heartbeat_key(app, q) for q in names])
    found = {}
    for queue, value in zip(names, raw, strict=True):
        if value:
            found[queue.value] = datetime.fromisoformat(value.decode() if isinstance(value, bytes) else value)
    return found


class HeartbeatWriter:
    """A daemon thread writing the worker's per-queue heartbeats; a Redis outage only skips beats."""

    def __init__(self, app: Flask, queues: Iterable[QueueName]) -> None:
        self.app = app
        self.queues = tuple(queues)
        self.interval = app.extensions["hongli.settings"].queue.worker_heartbeat_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                beat(self.app, self.queues)
                if failing:
                    logger.info("worker heartbeat written again")
                failing = False
            except Exception as exc:
                if not failing:
                    logger.warning("worker heartbeat not written (%s); retrying", type(exc).__name__)
                failing = True
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hongli-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
