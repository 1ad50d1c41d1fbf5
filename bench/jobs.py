"""``python -m bench payout-job``: payout job throughput against a no-op job on the same worker, side by side.

Both run on one in-process RQ worker (``SimpleWorker`` with the :class:`~app.queue.worker.AppWorker` app
context around every job, minus the fork-only pool reset) in burst mode, on the payouts queue of a fresh
bench database. A round enqueues N no-op jobs and drains them, then N payout jobs (one transfer-bill payout
each, saved with its bill number and queued after commit) and drains those; rounds alternate and the median
of the per-round ratios is reported. The payout pass is the whole thing: claim, save SUBMITTING + the ledger
move, a signed ``transfer-bills`` call to the WeChat sandbox (in process, through ``responses``: its own
request verification and response signing count against the payout job), record the outcome.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rq import Queue, SimpleWorker
from rq.job import Job

from bench.harness import bench_database

GOAL_RATIO = 0.4  # issue #15: "payout job ≥ 0.4×"


def noop() -> None:
    """The baseline job: nothing at all (dequeue, app context, bookkeeping — what every job pays)."""


class BenchWorker(SimpleWorker):
    """What ``AppWorker`` does around a job (the Flask app context, the session removed after), in process.

    It notes when its first job started and its last one ended: the worker's own start-up and teardown
    are not the jobs' cost (the teardown joins RQ's pub/sub thread with a one-second timeout, which landed
    on either side of a round at random and moved a round's rate by up to a third).
    """

    flask_app: Any
    first_started: float | None = None
    last_ended: float | None = None

    def perform_job(self, job: Job, queue: Queue) -> bool:
        from app.extensions import db

        if self.first_started is None:
            self.first_started = time.perf_counter()
        with self.flask_app.app_context():
            try:
                return bool(super().perform_job(job, queue))
            finally:
                db.session.remove()
                self.last_ended = time.perf_counter()


@dataclass
class _World:
    app: Any
    queue: Queue
    merchant: Any
    consumer_id: int
    sandbox: Any


@contextmanager
def _world() -> Iterator[_World]:
    import responses
    from flask_migrate import upgrade

    from app import create_app
    from app.audit.service import CLI
    from app.consumers.models import AppKind, Consumer, ConsumerStatus, WeChatIdentity
    from app.extensions import db
    from app.merchants.demo import seed_demo_merchant
    from app.merchants.models import PayoutRail
    from app.queue import QueueName, get_queue
    from app.settings import load_settings
    from wechat.sandbox import Clock, SandboxConfig, create_sandbox, world_of
    from wechat.sandbox.testing import route_to_wsgi

    with bench_database() as database_url, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text("")
        settings = load_settings(
            config_path=config,
            environ={
                "HONGLI_ENV": "test",
                "HONGLI_DATABASE__URL": database_url,
                "HONGLI_REDIS__URL": os.environ["TEST_REDIS_URL"],
                "HONGLI_QUEUE__PREFIX": "hongli-bench",
                "HONGLI_LOGGING__LEVEL": "WARNING",
            },
        )
        app = create_app(settings)
        sandbox = create_sandbox(SandboxConfig(seed=11), clock=Clock())
        with app.app_context(), responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            for base in {settings.wechat.api_base_url, settings.wechat.pay_base_url}:
                route_to_wsgi(mock, base, sandbox)
            upgrade()
            merchant = seed_demo_merchant(slug="bench-payouts", name="Bench Payouts", actor=CLI).merchant
            merchant.payout_rail = PayoutRail.TRANSFER_BILL
            consumer = Consumer(merchant_id=merchant.id, nickname="payee", status=ConsumerStatus.ACTIVE)
            db.session.add(consumer)
            db.session.flush()
            admin = sandbox.test_client()
            user = admin.post("/_sandbox/users", json={"id": "payee"}).get_json()
            db.session.add(
                WeChatIdentity(
                    merchant_id=merchant.id,
                    consumer_id=consumer.id,
                    app_kind=AppKind.MINIPROGRAM,
                    appid=merchant.mp_appid or "",
                    openid=user["openids"][merchant.mp_appid],
                )
            )
            db.session.commit()
            queue = get_queue(QueueName.PAYOUTS)
            queue.empty()
            try:
                yield _World(app, queue, merchant, consumer.id, world_of(sandbox))
            finally:
                queue.empty()
                db.session.remove()
                db.engine.dispose()


def _enqueue_payouts(world: _World, count: int, first: int) -> list[int]:
    """``count`` payouts, their money moved into the consumer's withdrawing bucket; queued after commit."""
    from app.core.money import Money
    from app.extensions import db
    from app.ledger.accounts import consumer_accounts, platform_account
    from app.ledger.models import AccountKind, EntryReason
    from app.ledger.service import post_entry
    from app.payouts.service import create_payout

    ids = []
    for index in range(first, first + count):
        post_entry(
            key=f"bench-payout-fund:{index}",
            reason=EntryReason.FUNDING,
            cause_type="bench",
            cause_id=str(index),
            lines=[
                (platform_account(AccountKind.PLATFORM_FUNDING_SOURCE), Money(-100)),
                (consumer_accounts(world.merchant.id, world.consumer_id).withdrawing, Money(100)),
            ],
            merchant_id=world.merchant.id,
        )
        payout = create_payout(
            merchant=world.merchant,
            consumer_id=world.consumer_id,
            source_type="bench",
            source_id=index,
            amount=Money(100),
            fee=Money(0),
        )
        ids.append(payout.id)
    db.session.commit()
    return ids


def _drain(world: _World, expected: int) -> float:
    """Jobs per second for one burst over the queue (which must hold ``expected`` jobs), from the start of
    the first job to the end of the last."""
    from app.queue import get_redis

    assert world.queue.count == expected, (world.queue.count, expected)
    worker = BenchWorker([world.queue], connection=get_redis())
    worker.flask_app = world.app
    worker.work(burst=True, logging_level="WARNING")
    failed = world.queue.failed_job_registry.count
    if failed or world.queue.count:
        raise RuntimeError(f"{failed} job(s) failed, {world.queue.count} left")
    assert worker.first_started is not None and worker.last_ended is not None
    return expected / (worker.last_ended - worker.first_started)


def measure_payout_job(rounds: int, jobs: int) -> dict[str, float]:
    """Interleaved rounds of ``jobs`` no-op jobs and ``jobs`` payout jobs; medians and the median ratio."""
    from sqlalchemy import func, select

    from app.extensions import db
    from app.payouts.models import Payout, PayoutStatus

    with _world() as world:
        warm = max(jobs // 4, 1)
        for _ in range(warm):
            world.queue.enqueue(noop)
        _drain(world, warm)
        _enqueue_payouts(world, warm, 0)
        _drain(world, warm)
        made = warm
        base_rates, case_rates, ratios = [], [], []
        for _ in range(rounds):
            for _ in range(jobs):
                world.queue.enqueue(noop)
            base = _drain(world, jobs)
            _enqueue_payouts(world, jobs, made)
            made += jobs
            rate = _drain(world, jobs)
            base_rates.append(base)
            case_rates.append(rate)
            ratios.append(rate / base)
        accepted = db.session.scalar(
            select(func.count()).select_from(Payout).where(Payout.status == PayoutStatus.ACCEPTED)
        )
        bills = len(world.sandbox.state.transfer_bills)
        if accepted != made or bills != made:
            raise RuntimeError(f"{made} payouts made, {accepted} accepted, {bills} bills at WeChat")
    return {
        "baseline_rps": statistics.median(base_rates),
        "case_rps": statistics.median(case_rates),
        "ratio": statistics.median(ratios),
    }
