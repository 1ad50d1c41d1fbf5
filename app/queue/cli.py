"""``flask --app wsgi worker``: the RQ worker with scheduler, periodic jobs and per-queue heartbeats."""

from __future__ import annotations

import logging

import click
import redis
from flask import current_app
from flask.cli import with_appcontext

from app.queue.heartbeat import HeartbeatWriter
from app.queue.periodic import PeriodicScheduler
from app.queue.queues import QueueName, get_queue
from app.queue.worker import AppWorker, make_worker, warm_caches, warn_if_evicting, work_until_stopped


@click.command("worker")
@click.option(
    "--queue",
    "-q",
    "queue_names",
    multiple=True,
    type=click.Choice([q.value for q in QueueName]),
    help="Queues to listen to (default: all, in priority order).",
)
@click.option("--burst", is_flag=True, help="Exit once the queues are empty.")
@click.option("--no-periodic", is_flag=True, help="Do not enqueue periodic jobs from this worker.")
@with_appcontext
def worker_command(queue_names: tuple[str, ...], burst: bool, no_periodic: bool) -> None:
    """Run an RQ worker with the scheduler (retries with intervals need it) and periodic jobs."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    settings = app.extensions["hongli.settings"]
    # A connection of the worker's own: RQ sizes its socket timeout to outlast the blocking dequeue,
    # which only works before any connection of the pool has been opened.
    connection = redis.Redis.from_url(settings.redis.url, socket_timeout=None)
    names = [QueueName(n) for n in queue_names] or list(QueueName)
    queues = [get_queue(name, app, connection) for name in names]
    # Before any thread or work horse exists: the horses inherit the parsed keys, no connection.
    logging.getLogger("hongli.worker").info("warmed %d merchant keys for the work horses", warm_caches(app))
    periodic = None
    heartbeat = None
    if settings.queue.periodic_jobs_enabled and not no_periodic and not burst:
        periodic = PeriodicScheduler(app)
        periodic.start()
    if not burst:
        heartbeat = HeartbeatWriter(app, names)
        heartbeat.start()

    def new_worker() -> AppWorker:
        return make_worker(app, queues, connection)

    try:
        warn_if_evicting(connection)
        work_until_stopped(
            new_worker, connection, burst=burst, with_scheduler=True, logging_level=settings.logging.level
        )
    finally:
        for thread in (heartbeat, periodic):
            if thread is not None:
                thread.stop()
