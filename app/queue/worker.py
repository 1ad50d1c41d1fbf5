"""The RQ worker: runs jobs inside the Flask app context, with RQ's scheduler and periodic jobs, and rides
through Redis outages (:func:`work_until_stopped`)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import redis
from flask import Flask
from rq import Queue, Worker
from rq.job import Job, JobStatus

from app.extensions import db
from app.metrics.instruments import observe_job, use_process_identity

logger = logging.getLogger("hongli.worker")

# Waits between attempts to reach Redis again after the worker loop gave up on it.
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 15.0


class AppWorker(Worker):
    """A forking RQ worker whose work horse runs every job inside ``flask_app.app_context()``."""

    flask_app: Flask

    def perform_job(self, job: Job, queue: Queue) -> bool:
        # In the work horse: metrics go to the files of this worker's horse slot, not one set per job.
        use_process_identity(f"horse-{os.getppid()}")
        with self.flask_app.app_context():
            # The horse is a fresh fork: never reuse the parent's pooled connections.
            db.engine.dispose(close=False)
            try:
                return bool(super().perform_job(job, queue))
            finally:
                db.session.remove()

    def execute_job(self, job: Job, queue: Queue) -> None:
        started = time.monotonic()
        try:
            super().execute_job(job, queue)
        finally:
            # In the worker's main process, once the horse is gone.
            _observe(job, queue, time.monotonic() - started)


def _observe(job: Job, queue: Queue, seconds: float) -> None:
    name = queue.name.rsplit("-", 1)[-1]
    try:
        status = job.get_status(refresh=True)
        result = {JobStatus.FINISHED: "finished", JobStatus.FAILED: "failed"}.get(status, "other")
    except Exception:  # the job's hash may be gone (Redis restarted without it): the run still counts
        result = "other"
    waited = None
    if job.enqueued_at is not None and job.started_at is not None:
        waited = (job.started_at - job.enqueued_at).total_seconds()
    try:
        observe_job(name, result, seconds, waited)
    except Exception:
        logger.warning("could not record job metrics", exc_info=True)


def eviction_warning(connection: redis.Redis) -> str | None:
    """A warning when Redis may evict keys (queued jobs would silently vanish), else None."""
    try:
        policy = connection.config_get("maxmemory-policy").get("maxmemory-policy")
    except (redis.ConnectionError, redis.TimeoutError):
        return "cannot reach Redis to read its maxmemory-policy; make sure it is 'noeviction'"
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


def warm_caches(app: Flask, limit: int = 500) -> int:
    """Parse the merchants' WeChat Pay private keys once, in the worker's main process, before any work horse
    is forked: each horse inherits the parsed keys instead of paying ~35 ms (RSA key validation) in every
    job that signs a call. A merchant added later is parsed in the horse that first needs it. Returns how
    many keys were parsed; a merchant whose credentials cannot be opened is skipped (its jobs will say why).
    """
    from sqlalchemy import select

    from app.merchants.models import Merchant, MerchantStatus
    from app.merchants.service import merchant_secrets
    from wechat.crypto import load_private_key

    parsed = 0
    with app.app_context():
        try:
            merchants = db.session.scalars(
                select(Merchant)
                .where(Merchant.status == MerchantStatus.ACTIVE, Merchant.sealed_credentials.is_not(None))
                .order_by(Merchant.id)
                .limit(limit)
            ).all()
            for merchant in merchants:
                try:
                    pem = merchant_secrets(merchant).pay_private_key_pem
                    if pem:
                        load_private_key(pem)
                        parsed += 1
                except Exception:
                    logger.warning("merchant %s: credentials not warmed", merchant.id, exc_info=True)
        finally:
            db.session.remove()  # its connection back to the pool, which every horse disposes of unused
    return parsed


def make_worker(app: Flask, queues: list[Queue], connection: redis.Redis, **kwargs: Any) -> AppWorker:
    worker = AppWorker(queues, connection=connection, **kwargs)
    worker.flask_app = app
    return worker


def work_until_stopped(
    new_worker: Callable[[], AppWorker], connection: redis.Redis, *, burst: bool = False, **work_kwargs: Any
) -> None:
    """Run RQ's work loop, and run it again when it gives up while nobody asked it to stop.

    RQ's loop retries a lost Redis only while it waits for a job; an outage anywhere else (watching a
    work horse, a heartbeat, its own bookkeeping) ends ``work()`` ("found an unhandled exception,
    quitting"), and a supervisor such as ``make run`` would then stop the whole system. Here the worker
    waits for the horse it was watching (the job finishes or fails on its own; what it changed is guarded
    by its rows, and the sweeps queue whatever the outage lost), waits with backoff until Redis answers,
    and starts a fresh RQ worker (a new name: the old one may still be registered). ``SIGTERM``/``SIGINT``
    stop it as before, also while it waits.
    """
    stopping = threading.Event()
    backoff = BACKOFF_FIRST_SECONDS
    while True:
        worker = new_worker()
        failed = False
        try:
            worker.work(burst=burst, **work_kwargs)
        except redis.RedisError as exc:
            # RQ's teardown (registering the worker's death) needs Redis too.
            logger.error("worker lost Redis (%s: %s)", type(exc).__name__, exc)
            failed = True
        # RQ notes a SIGTERM/SIGINT as its date (an idle worker stops without setting _stop_requested).
        if burst or worker._stop_requested or worker._shutdown_requested_date is not None:
            return
        if not failed:
            logger.error("the RQ work loop ended without a stop request (see its log above)")
        _abandon(worker)

        def request_stop(signum: int, _frame: Any) -> None:
            logger.info("worker stopping on signal %d while waiting for Redis", signum)
            stopping.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        while not stopping.is_set():
            try:
                connection.ping()
                break
            except redis.RedisError:
                logger.warning("Redis is not answering; the worker tries again in %.1f s", backoff)
                stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
        if stopping.is_set():
            return
        logger.warning("Redis answers again; the worker resumes")
        backoff = BACKOFF_FIRST_SECONDS


def _abandon(worker: AppWorker) -> None:
    """Let go of a worker whose loop ended on an error: wait for its horse, stop its threads."""
    horse = worker._horse_pid
    if horse:
        logger.warning("waiting for work horse %d to finish its job", horse)
        with suppress(ChildProcessError, OSError):
            os.waitpid(horse, 0)
        worker._horse_pid = 0
    if worker.scheduler is not None:
        with suppress(Exception):
            worker.stop_scheduler()
    thread = getattr(worker, "pubsub_thread", None)
    if thread is not None:
        with suppress(Exception):
            thread.stop()
            thread.join(timeout=5)
    pubsub = getattr(worker, "pubsub", None)
    if pubsub is not None:
        with suppress(Exception):
            pubsub.close()
