"""Cron-like periodic jobs, safe with any number of workers.

Every worker runs a :class:`PeriodicScheduler` thread. For each registered job it computes the
latest due slot (a cron boundary) and claims it in Redis with ``SET NX``: exactly one worker
enqueues each slot, however many run, and a slot missed while every worker was down is enqueued
once when one comes back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import croniter
from flask import Flask
from rq import Queue

from app.queue.queues import QueueName, get_queue, get_redis

logger = logging.getLogger("hongli.periodic")


@dataclass(frozen=True)
class PeriodicJob:
    """``func`` (dotted path) enqueued on ``queue`` at every boundary of the cron expression ``cron``."""

    name: str
    func: str
    cron: str
    queue: QueueName = QueueName.SWEEPS

    def __post_init__(self) -> None:
        if not croniter.is_valid(self.cron):
            raise ValueError(f"periodic job {self.name}: invalid cron expression {self.cron!r}")

    def latest_slot(self, now: datetime) -> datetime:
        """The most recent boundary at or before ``now``."""
        # get_prev is strictly before its start, so start one second after ``now``.
        start = now.replace(microsecond=0) + timedelta(seconds=1)
        slot: datetime = croniter(self.cron, start).get_prev(datetime)
        return slot


# The registry. Later capabilities append their sweeps here (by dotted path: app never imports jobs).
PERIODIC_JOBS: tuple[PeriodicJob, ...] = (
    PeriodicJob("heartbeat", "jobs.maintenance.record_heartbeat", "* * * * *", QueueName.DEFAULT),
    PeriodicJob("close-expired-orders", "jobs.payments.close_expired_orders", "* * * * *"),
    PeriodicJob("retry-requested-refunds", "jobs.payments.retry_requested_refunds", "*/5 * * * *"),
    PeriodicJob("reconcile-trades", "jobs.payments.reconcile_yesterday", "30 10 * * *"),
    PeriodicJob("settle-rebates", "jobs.rebates.settle_rebates", "*/10 * * * *"),
    PeriodicJob("expire-red-packets", "jobs.rebates.expire_packets", "*/5 * * * *"),
    PeriodicJob("advance-campaigns", "jobs.rebates.advance_campaigns", "* * * * *"),
    PeriodicJob("enqueue-due-payouts", "jobs.payouts.enqueue_due_payouts", "* * * * *"),
    PeriodicJob("query-uncertain-payouts", "jobs.payouts.query_uncertain_payouts", "* * * * *"),
    PeriodicJob("resolve-unlinked-followers", "jobs.followers.resolve_unlinked", "*/10 * * * *"),
    PeriodicJob("collect-messages", "jobs.messages.collect", "* * * * *"),
    PeriodicJob("expire-coupons", "jobs.coupons.expire_coupons", "*/5 * * * *"),
    PeriodicJob("resend-coupons", "jobs.coupons.resend_coupons", "* * * * *"),
    PeriodicJob("refund-personal-packets", "jobs.personal.refund_personal_packets", "*/5 * * * *"),
    PeriodicJob("refresh-risk-groups", "jobs.risk.refresh_groups", "17 * * * *"),
    PeriodicJob("close-pools", "jobs.pools.close_pools", "* * * * *"),
    PeriodicJob("reconcile-pools", "jobs.pools.reconcile_pools", "* * * * *"),
    PeriodicJob("collect-unopened-fission", "jobs.pools.collect_unopened_shares", "23 * * * *"),
)


class PeriodicScheduler:
    """Claims and enqueues due slots; :meth:`tick` is one pass, :meth:`start` runs passes in a thread."""

    def __init__(
        self,
        app: Flask,
        jobs: Iterable[PeriodicJob] = PERIODIC_JOBS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        interval_seconds: int = 5,
    ) -> None:
        self.app = app
        self.jobs = tuple(jobs)
        self.clock = clock
        self.interval_seconds = interval_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        prefix = app.extensions["hongli.settings"].queue.prefix
        self._claim_prefix = f"{prefix}:periodic"

    def tick(self) -> list[str]:
        """Enqueue every job whose latest slot nobody has claimed yet; return the job ids enqueued."""
        now = self.clock()
        redis = get_redis(self.app)
        enqueued = []
        for job in self.jobs:
            slot = job.latest_slot(now)
            stamp = slot.strftime("%Y%m%dT%H%M")
            claim = f"{self._claim_prefix}:{job.name}:{stamp}"
            # The claim outlives any realistic slot spacing, so a slot is never enqueued twice.
            if not redis.set(claim, "1", nx=True, ex=8 * 86400):
                continue
            queue: Queue = get_queue(job.queue, self.app)
            job_id = f"periodic-{job.name}-{stamp}"
            queue.enqueue(job.func, job_id=job_id, description=f"periodic {job.name} @ {slot.isoformat()}")
            enqueued.append(job_id)
        return enqueued

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                logger.exception("periodic scheduler pass failed; retrying")
            self._stop.wait(self.interval_seconds)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hongli-periodic", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
