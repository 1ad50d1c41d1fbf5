"""Payout jobs: one pass over one payout (claim → save → call WeChat → record), and the outbox sweep."""

from __future__ import annotations

import logging

from app.core.errors import DomainError
from app.extensions import db
from app.payouts import service
from app.queue import QueueName, get_queue

logger = logging.getLogger("hongli.jobs.payouts")


def process_payout(payout_id: int) -> str:
    """One pass; returns the payout's state ("skipped" if it is not due, finished or leased to another pass;
    "throttled" if the merchant's red-packet rate made it wait, rescheduled ~1 s later; "claim lost" if its
    lease ran out under it and another pass took the row).

    Two transactions, none open during a WeChat call: the claim with SUBMITTING and the money in flight,
    then the outcome. The row, not the job, is the guard: duplicates of this job are harmless. Failures are
    never swallowed: an outcome WeChat left open is recorded on the row with its next attempt time (backoff
    with jitter); an exception after the first commit leaves the row SUBMITTING for the sweep to resolve by
    query once the lease runs out, and one before it leaves the row as it was, claimed.
    """
    try:
        try:
            step = service.start_pass(payout_id)
        except DomainError as exc:
            # Nothing of the pass was kept (e.g. Overdraft: the money is not in withdrawing any more);
            # say so on the row, in a transaction of its own, instead of failing silently every lease.
            db.session.rollback()
            refused = service.refuse_pass(payout_id, exc)
            db.session.commit()
            if refused is None:
                return "skipped"
            logger.warning("payout %s: pass refused: %s", payout_id, exc.message)
            return "refused"
        except Exception:
            db.session.rollback()
            _leave_claim(payout_id)
            raise
        # Claimed, SUBMITTING with its bill number and the money in flight, before WeChat hears of it.
        db.session.commit()
        if step is None:
            return "skipped"
        outcome = service.run_pass(step)
        recorded = service.record_outcome(payout_id, step.token, outcome, log=step.log, seen=step.row)
        db.session.commit()
        if recorded is None:
            return "claim lost"  # another pass owns the row now; it learns the same facts by query
        if outcome.code == service.RATE_LIMITED:
            # Reschedule shortly (RQ's scheduler) rather than wait a minute for the outbox sweep.
            get_queue(QueueName.PAYOUTS).enqueue_at(recorded.next_attempt_at, service.PROCESS_JOB, payout_id)
            return "throttled"
        return recorded.status.value
    except Exception:
        db.session.rollback()
        raise


def _leave_claim(payout_id: int) -> None:
    """After a pass failed before it could record anything: take the lease alone, so retries wait for it
    to run out and ``payouts check`` lists a row whose passes keep ending this way (``never_begun``)."""
    try:
        service.claim_payout(payout_id)
        db.session.commit()
    except Exception:
        db.session.rollback()
        logger.exception("payout %s: could not leave the failed pass's claim", payout_id)


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
