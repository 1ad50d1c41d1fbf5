"""The sweeps ``flask dev run-due`` runs now, in order, in this process (app never imports jobs/)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from rq.utils import import_attribute

from app.extensions import db
from app.queue.periodic import PERIODIC_JOBS

logger = logging.getLogger("hongli.devclock")


@dataclass(frozen=True)
class DueJob:
    """A sweep by name and dotted path; ``replaces`` names the periodic job it stands for."""

    name: str
    func: str
    replaces: str


# The periodic sweeps run now, by name, in this order (their functions are the periodic jobs' own). Order
# matters: unpaid orders close before campaigns end; settlement before payouts (a cash campaign's settled
# rebate leaves as a payout in the same run); the sandbox has already moved (its red-packet refunds and
# transfer-bill timeouts happened), so the payout passes see WeChat's new states; messages last, about
# what the sweeps before them settled.
_DUE_ORDER = (
    "close-expired-orders",
    "retry-requested-refunds",
    "advance-campaigns",
    "close-pools",  # a pool past its window gives back what no grab took
    "settle-rebates",
    "expire-red-packets",
    "refund-personal-packets",  # after expiry: a friend's packet that expired unspent is refunded too
    "expire-coupons",
    "enqueue-due-payouts",
    "query-uncertain-payouts",
    "collect-unopened-fission",  # a day after a fission packet was opened: what WeChat gave back
    "collect-messages",
)
# Run synchronously here instead of what the periodic job does (queue a pass per payout for the worker).
_IN_PROCESS = {
    "enqueue-due-payouts": DueJob("run-due-payouts", "jobs.payouts.run_due_payouts", "enqueue-due-payouts")
}


def _due_jobs() -> tuple[DueJob, ...]:
    periodic = {job.name: job for job in PERIODIC_JOBS}
    return tuple(_IN_PROCESS.get(name) or DueJob(name, periodic[name].func, name) for name in _DUE_ORDER)


DUE_JOBS = _due_jobs()
# Periodic jobs that are not business deadlines: liveness, the daily bill reconciliation (run it with
# `flask --app wsgi reconcile …`), the sweeps that re-queue work whose enqueue was lost (and the pools'
# reconciliation of Redis with PostgreSQL), and the risk engine's group cache written again from the database.
NOT_DUE_JOBS = frozenset(
    {
        "heartbeat",
        "reconcile-trades",
        "resend-coupons",
        "resolve-unlinked-followers",
        "refresh-risk-groups",
        "reconcile-pools",
    }
)


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
