"""Payout jobs: one pass over one payout (claim → save → call WeChat → record), and the outbox sweep."""

from __future__ import annotations

import logging

from app.core.errors import DomainError
from app.extensions import db
from app.merchants.models import Merchant
from app.payouts import service
from app.queue import QueueName, get_queue

logger = logging.getLogger("hongli.jobs.payouts")


def process_payout(payout_id: int) -> str:
    """One pass; returns the payout's state ("skipped" if it is not due, finished or leased to another pass;
    "throttled" if the merchant's red-packet rate made it wait, rescheduled ~1 s later).

    The row, not the job, is the guard: duplicates of this job are harmless. Failures are never swallowed:
    an outcome WeChat left open is recorded on the row with its next attempt time (backoff with jitter),
    and an exception leaves the row SUBMITTING for the sweep to resolve by query once the lease runs out.
    """
    try:
        token = service.claim_payout(payout_id)
        db.session.commit()
        if token is None:
            return "skipped"
        try:
            step = service.begin_pass(payout_id, token)
        except DomainError as exc:
            # Nothing of the pass was kept (e.g. Overdraft: the money is not in withdrawing any more);
            # say so on the row, in a transaction of its own, instead of failing silently every lease.
            db.session.rollback()
            service.refuse_pass(payout_id, token, exc)
            db.session.commit()
            logger.warning("payout %s: pass refused: %s", payout_id, exc.message)
            return "refused"
        if step is None:
            service.release_claim(payout_id, token)
            db.session.commit()
            return "done"
        payout = service.get_payout(payout_id)
        merchant = db.session.get(Merchant, payout.merchant_id)
        assert merchant is not None
        # The row is SUBMITTING with its bill number (and the money in flight) before WeChat hears of it.
        db.session.commit()
        outcome = service.run_pass(merchant, step)
        recorded = service.record_outcome(payout_id, token, outcome)
        db.session.commit()
        if outcome.code == service.RATE_LIMITED and recorded is not None:
            # Reschedule shortly (RQ's scheduler) rather than wait a minute for the outbox sweep.
            get_queue(QueueName.PAYOUTS).enqueue_at(recorded.next_attempt_at, service.PROCESS_JOB, payout_id)
            return "throttled"
        return recorded.status.value if recorded is not None else "missing"
    except Exception:
        db.session.rollback()
        raise


def enqueue_due_payouts() -> int:
    """The outbox sweep: every open payout whose next pass is due is queued (after commit)."""
    try:
        count = service.enqueue_due_payouts()
        db.session.commit()
        return count
    except Exception:
        db.session.rollback()
        raise


def query_uncertain_payouts() -> int:
    """Every submitting/unknown payout not queried for half of ``payouts.unknown_query_deadline_minutes``
    gets a pass now — a query of its same bill number, recorded in its history — whatever its backoff.

    Returns how many passes ran; raises after trying them all if any pass failed.
    """
    from app.payouts.operations import payouts_to_query

    try:
        ids = payouts_to_query()
    finally:
        db.session.rollback()  # a read only: end it before the passes open their own transactions
    return _passes(ids, make_due=True, failed="overdue query passes failed")


def run_due_payouts() -> int:
    """Every due payout gets its pass now, in this process (``flask dev run-due``; the periodic sweep
    queues them for the worker instead). Returns how many passes ran; raises after trying them all if
    any pass failed."""
    try:
        ids = service.due_payout_ids()
    finally:
        db.session.rollback()  # a read only: end it before the passes open their own transactions
    return _passes(ids, make_due=False, failed="passes failed")


def _passes(ids: list[int], *, make_due: bool, failed: str) -> int:
    """A pass for each payout of ``ids`` (made due first if asked); raises after trying them all if any
    pass failed, naming them. Returns how many passes ran."""
    failures: list[int] = []
    for payout_id in ids:
        try:
            if make_due:
                service.make_due(payout_id)
                db.session.commit()
            process_payout(payout_id)
        except Exception:
            db.session.rollback()
            logger.exception("payout %s: pass failed", payout_id)
            failures.append(payout_id)
    if failures:
        raise RuntimeError(f"{failed} for payouts {failures}")
    return len(ids)
