"""Periodic jobs: each cron slot is enqueued exactly once, however many workers tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis as redis_lib
from flask import Flask

from app.queue import QueueName, get_queue
from app.queue.periodic import PERIODIC_JOBS, PeriodicJob, PeriodicScheduler

EVERY_FIVE = PeriodicJob("sweep", "jobs.maintenance.record_heartbeat", "*/5 * * * *", QueueName.SWEEPS)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.parametrize(
    ("now", "slot"),
    [
        (datetime(2026, 11, 27, 10, 7, 30, tzinfo=UTC), datetime(2026, 11, 27, 10, 5, tzinfo=UTC)),
        (datetime(2026, 11, 27, 10, 5, 0, tzinfo=UTC), datetime(2026, 11, 27, 10, 5, tzinfo=UTC)),
        (datetime(2026, 11, 27, 10, 4, 59, 999999, tzinfo=UTC), datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
    ],
)
def test_latest_slot(now: datetime, slot: datetime) -> None:
    assert EVERY_FIVE.latest_slot(now) == slot


def test_invalid_cron_is_refused_at_definition() -> None:
    with pytest.raises(ValueError, match="invalid cron"):
        PeriodicJob("bad", "jobs.x.y", "every minute")


def test_registered_jobs_name_importable_functions() -> None:
    import importlib

    for job in PERIODIC_JOBS:
        module, _, name = job.func.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name)), job


def test_many_schedulers_enqueue_each_slot_once(app: Flask, redis: redis_lib.Redis) -> None:
    clock = Clock(datetime(2026, 11, 27, 10, 7, tzinfo=UTC))
    workers = [PeriodicScheduler(app, jobs=[EVERY_FIVE], clock=clock) for _ in range(3)]
    enqueued = [job_id for worker in workers for job_id in worker.tick()]
    assert enqueued == ["periodic-sweep-20261127T1005"]
    clock.now += timedelta(minutes=2)  # 10:09, same slot
    assert [job_id for worker in workers for job_id in worker.tick()] == []
    clock.now += timedelta(minutes=1)  # 10:10, next slot
    assert [job_id for worker in workers for job_id in worker.tick()] == ["periodic-sweep-20261127T1010"]
    assert get_queue(QueueName.SWEEPS).job_ids == [
        "periodic-sweep-20261127T1005",
        "periodic-sweep-20261127T1010",
    ]


def test_missed_slots_are_caught_up_once(app: Flask, redis: redis_lib.Redis) -> None:
    """After an outage only the latest slot runs: sweeps are idempotent and cover what was missed."""
    clock = Clock(datetime(2026, 11, 27, 10, 0, tzinfo=UTC))
    scheduler = PeriodicScheduler(app, jobs=[EVERY_FIVE], clock=clock)
    scheduler.tick()
    clock.now += timedelta(hours=2, minutes=3)
    assert scheduler.tick() == ["periodic-sweep-20261127T1200"]


def test_scheduler_thread_starts_and_stops(app: Flask, redis: redis_lib.Redis) -> None:
    scheduler = PeriodicScheduler(app, jobs=[EVERY_FIVE], interval_seconds=1)
    scheduler.start()
    scheduler.stop()
    assert get_queue(QueueName.SWEEPS).count == 1
