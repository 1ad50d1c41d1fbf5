"""The sweeps ``flask dev run-due`` runs now, in order, in this process (app never imports jobs/)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from rq.utils import import_attribute

from app.extensions import db

logger = logging.getLogger("hongli.devclock")


@dataclass(frozen=True)
class DueJob:
    """A sweep by name and dotted path; ``replaces`` names the periodic job it stands for."""

    name: str
    func: str
    replaces: str


# Order matters: unpaid orders close before campaigns end; settlement before payouts (a cash campaign's
# settled rebate leaves as a payout in the same run); the sandbox has already moved (its red-packet refunds
# and transfer-bill timeouts happened), so the payout passes see WeChat's new states.
DUE_JOBS: tuple[DueJob, ...] = (
    DueJob("close-expired-orders", "jobs.payments.close_expired_orders", "close-expired-orders"),
    DueJob("retry-requested-refunds", "jobs.payments.retry_requested_refunds", "retry-requested-refunds"),
    DueJob("advance-campaigns", "jobs.rebates.advance_campaigns", "advance-campaigns"),
    DueJob("settle-rebates", "jobs.rebates.settle_rebates", "settle-rebates"),
    DueJob("expire-red-packets", "jobs.rebates.expire_packets", "expire-red-packets"),
    # Synchronous, instead of queueing a pass per payout for the worker.
    DueJob("run-due-payouts", "jobs.payouts.run_due_payouts", "enqueue-due-payouts"),
    DueJob("query-uncertain-payouts", "jobs.payouts.query_uncertain_payouts", "query-uncertain-payouts"),
)
# Periodic jobs that are not business deadlines: liveness, and the daily bill reconciliation (run it
# with `flask --app wsgi reconcile …`).
NOT_DUE_JOBS = frozenset({"heartbeat", "reconcile-trades"})


@dataclass(frozen=True)
class DueResult:
    """What one sweep returned (a count), or why it failed."""

    name: str
    result: object = None
    error: str | None = None


def run_due_jobs(report: Callable[[DueResult], None] = lambda _: None) -> list[DueResult]:
    """Run every sweep of :data:`DUE_JOBS` once, each in its own transaction; a failure is reported and
    the next sweep still runs."""
    results = []
    for job in DUE_JOBS:
        try:
            outcome = DueResult(job.name, import_attribute(job.func)())
        except Exception as exc:
            db.session.rollback()
            logger.exception("dev run-due: %s failed", job.name)
            outcome = DueResult(job.name, error=f"{type(exc).__name__}: {exc}")
        results.append(outcome)
        report(outcome)
    return results
