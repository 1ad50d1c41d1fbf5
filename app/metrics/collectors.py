"""Figures read at scrape time from PostgreSQL and Redis: they describe the system, not one process.

Each source is read in its own try: a scrape while Redis (or the database) is away still answers, with
``hongli_up{dependency}`` saying which part could not be read.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import BigInteger, func, select, type_coerce

from app.campaigns.models import Campaign, CampaignStatus
from app.core.db import utcnow
from app.extensions import db
from app.ledger.models import AccountKind, LedgerAccount, OwnerType
from app.payouts.models import Payout, PayoutStatus
from app.queue.heartbeat import worker_heartbeats
from app.queue.queues import QueueName, get_queue, get_redis
from app.rebates.models import RebateGrant

logger = logging.getLogger("hongli.metrics")

# Payouts still in our hands or WeChat's without a final answer: their age is what "stuck" means.
OPEN_PAYOUT_STATUSES = (
    PayoutStatus.CREATED,
    PayoutStatus.SUBMITTING,
    PayoutStatus.UNKNOWN,
    PayoutStatus.ACCEPTED,
)
LIVE_CAMPAIGNS = (CampaignStatus.ACTIVE, CampaignStatus.PAUSED)


def ledger_check_key(app: Flask) -> str:
    return f"{app.extensions['hongli.settings'].queue.prefix}:ledger-check"


def record_ledger_check(app: Flask, *, checks: int, violations: int) -> None:
    """Remember the outcome of a ledger check (``flask ledger check``) for ``hongli_ledger_check_*``.
    Best effort: a Redis outage must not change what the check itself reports."""
    record = {"at": time.time(), "checks": checks, "violations": violations}
    try:
        get_redis(app).set(ledger_check_key(app), json.dumps(record))
    except Exception:
        logger.warning("could not record the ledger check's result in Redis", exc_info=True)


def _fen(column: Any) -> Any:
    return type_coerce(column, BigInteger)


class StateCollector(Collector):
    """Payouts by status and rail, budget per live campaign, queue depth and age, worker heartbeats and
    the last ledger check — read when ``/metrics`` is scraped."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "hongli_up", "Whether /metrics could read this dependency (1) or not (0).", labels=["dependency"]
        )
        try:
            yield from self._database()
            up.add_metric(["database"], 1)
        except Exception:
            logger.warning("metrics: could not read the database", exc_info=True)
            db.session.rollback()
            up.add_metric(["database"], 0)
        try:
            yield from self._redis()
            up.add_metric(["redis"], 1)
        except Exception:
            logger.warning("metrics: could not read Redis", exc_info=True)
            up.add_metric(["redis"], 0)
        yield up

    def _database(self) -> Iterator[Metric]:
        now = utcnow()
        payouts = GaugeMetricFamily(
            "hongli_payouts", "Payouts by status and rail (all time).", labels=["status", "rail"]
        )
        oldest = GaugeMetricFamily(
            "hongli_payouts_open_oldest_seconds",
            "Age of the oldest payout without a final answer, by status and rail (stuck payouts).",
            labels=["status", "rail"],
        )
        rows = db.session.execute(
            select(Payout.status, Payout.rail, func.count(), func.min(Payout.created_at)).group_by(
                Payout.status, Payout.rail
            )
        ).all()
        for status, rail, count, first in rows:
            payouts.add_metric([status.value, rail.value], count)
            if status in OPEN_PAYOUT_STATUSES and first is not None:
                first = first if first.tzinfo else first.replace(tzinfo=UTC)
                oldest.add_metric([status.value, rail.value], max((now - first).total_seconds(), 0.0))
        booked = GaugeMetricFamily(
            "hongli_campaign_booked_fen",
            "Rebates booked by a live campaign (active or paused), net of reversals, in fen; its rate is the burn.",
            labels=["merchant_id", "campaign_id"],
        )
        remaining = GaugeMetricFamily(
            "hongli_campaign_budget_fen",
            "A live campaign's budget in fen: what is left to book (remaining) and held for issued packets (reserved).",
            labels=["merchant_id", "campaign_id", "part"],
        )
        grants = db.session.execute(
            select(
                Campaign.merchant_id,
                Campaign.id,
                func.coalesce(func.sum(_fen(RebateGrant.amount) - _fen(RebateGrant.reversed)), 0),
            )
            .outerjoin(RebateGrant, RebateGrant.campaign_id == Campaign.id)
            .where(Campaign.status.in_(LIVE_CAMPAIGNS))
            .group_by(Campaign.merchant_id, Campaign.id)
        ).all()
        for merchant_id, campaign_id, fen in grants:
            booked.add_metric([str(merchant_id), str(campaign_id)], int(fen))
        parts = {AccountKind.CAMPAIGN_BUDGET: "remaining", AccountKind.CAMPAIGN_RESERVED: "reserved"}
        balances = db.session.execute(
            select(
                LedgerAccount.merchant_id,
                LedgerAccount.owner_id,
                LedgerAccount.kind,
                _fen(LedgerAccount.balance),
            )
            .join(Campaign, Campaign.id == LedgerAccount.owner_id)
            .where(
                LedgerAccount.owner_type == OwnerType.CAMPAIGN,
                LedgerAccount.kind.in_(list(parts)),
                Campaign.status.in_(LIVE_CAMPAIGNS),
            )
        ).all()
        for merchant_id, campaign_id, kind, fen in balances:
            remaining.add_metric([str(merchant_id), str(campaign_id), parts[kind]], int(fen))
        db.session.rollback()  # only read; the scrape's connection goes back clean
        yield from (payouts, oldest, booked, remaining)

    def _redis(self) -> Iterator[Metric]:
        redis = get_redis(self.app)
        depth = GaugeMetricFamily("hongli_queue_jobs", "Jobs waiting in each queue.", labels=["queue"])
        age = GaugeMetricFamily(
            "hongli_queue_oldest_job_seconds",
            "How long the job at the head of each queue has waited (0 when empty).",
            labels=["queue"],
        )
        now = datetime.now(UTC)
        for name in QueueName:
            queue = get_queue(name, self.app)
            depth.add_metric([name.value], queue.count)
            waited = 0.0
            head = queue.get_job_ids(0, 1)
            if head:
                job = queue.fetch_job(head[0])
                if job is not None and job.enqueued_at is not None:
                    enqueued = job.enqueued_at
                    enqueued = enqueued if enqueued.tzinfo else enqueued.replace(tzinfo=UTC)
                    waited = max((now - enqueued).total_seconds(), 0.0)
            age.add_metric([name.value], waited)
        heartbeat = GaugeMetricFamily(
            "hongli_worker_heartbeat_age_seconds",
            "Seconds since a worker listening to each queue last wrote its heartbeat (absent: none alive).",
            labels=["queue"],
        )
        for queue_name, at in worker_heartbeats(self.app).items():
            heartbeat.add_metric([queue_name], max((now - at).total_seconds(), 0.0))
        check = GaugeMetricFamily(
            "hongli_ledger_check_violations",
            "Violations found by the last `flask ledger check` (0: clean).",
        )
        checked = GaugeMetricFamily(
            "hongli_ledger_check_timestamp_seconds", "When the last `flask ledger check` ran (Unix time)."
        )
        raw = redis.get(ledger_check_key(self.app))
        if raw:
            record = json.loads(raw)
            check.add_metric([], int(record["violations"]))
            checked.add_metric([], float(record["at"]))
        yield from (depth, age, heartbeat, check, checked)
