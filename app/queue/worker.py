"""The RQ worker: runs jobs inside the Flask app context, with RQ's scheduler and periodic jobs."""

from __future__ import annotations

import logging
import sys
from typing import Any

import redis
from flask import Flask
from rq import Queue, Worker
from rq.job import Job

from app.extensions import db

logger = logging.getLogger("hongli.worker")


class AppWorker(Worker):
    """A forking RQ worker whose work horse runs every job inside ``flask_app.app_context()``."""

    flask_app: Flask

    def perform_job(self, job: Job, queue: Queue) -> bool:
        with self.flask_app.app_context():
            # The horse is a fresh fork: never reuse the parent's pooled connections.
            db.engine.dispose(close=False)
            try:
                return bool(super().perform_job(job, queue))
            finally:
                db.session.remove()


def eviction_warning(connection: redis.Redis) -> str | None:
    """A warning when Redis may evict keys (queued jobs would silently vanish), else None."""
    try:
        policy = connection.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.ResponseError:
        return "cannot read Redis maxmemory-policy (CONFIG disabled?); make sure it is 'noeviction'"
    if policy != "noeviction":
        return (
            f"Redis maxmemory-policy is {policy!r}: under memory pressure Redis will DELETE queued jobs. "
            "Set maxmemory-policy noeviction on the queue Redis."
        )
    return None


def warn_if_evicting(connection: redis.Redis) -> None:
    warning = eviction_warning(connection)
    if warning:
        logger.warning(warning)
        print(f"\n*** WARNING: {warning} ***\n", file=sys.stderr)  # noqa: T201 - operators must see it


def make_worker(app: Flask, queues: list[Queue], connection: redis.Redis, **kwargs: Any) -> AppWorker:
    worker = AppWorker(queues, connection=connection, **kwargs)
    worker.flask_app = app
    return worker
