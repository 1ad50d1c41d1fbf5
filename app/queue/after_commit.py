"""Enqueue a job only once the current database transaction has committed.

A job must never see a row that may still roll back: jobs are held in the session and handed to
RQ in ``after_commit``; any rollback drops them. If Redis is unreachable at that moment the job is
lost (the data is committed), which is why work that must happen is also recorded in a row that a
periodic sweep re-enqueues (the outbox), never only in Redis.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from rq import Queue, Retry
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.extensions import db
from app.queue.queues import QueueName, get_queue

logger = logging.getLogger("hongli.queue")
_PENDING = "hongli.pending_jobs"


@dataclass(frozen=True)
class PendingJob:
    queue: Queue
    func: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    job_id: str | None = None
    retry: Retry | None = None


def enqueue_after_commit(
    func: str,
    *args: Any,
    queue: QueueName = QueueName.DEFAULT,
    job_id: str | None = None,
    retry: Retry | None = None,
    **kwargs: Any,
) -> None:
    """Queue ``func(*args, **kwargs)`` (a dotted path) to run after the current transaction commits."""
    if "." not in func:
        raise ValueError("jobs are named by dotted path, e.g. 'jobs.maintenance.record_heartbeat'")
    session = db.session()
    if not session.in_transaction():
        # Begin now so that a rollback before any SQL still fires the rollback hook and drops the job.
        session.begin()
    pending = PendingJob(get_queue(queue), func, args, kwargs, job_id, retry)
    session.info.setdefault(_PENDING, []).append(pending)


def _flush_pending(session: Session) -> None:
    for job in session.info.pop(_PENDING, []):
        try:
            job.queue.enqueue(job.func, *job.args, job_id=job.job_id, retry=job.retry, **job.kwargs)
        except Exception:
            # The commit stands; the outbox sweep for this kind of work picks it up again.
            logger.exception("could not enqueue %s after commit", job.func, extra={"job_func": job.func})


def _drop_pending(session: Session, *_: Any) -> None:
    dropped = session.info.pop(_PENDING, [])
    if dropped:
        logger.info("dropped %d job(s) of a rolled-back transaction", len(dropped))


def install_session_hooks() -> None:
    """Listen once, process-wide, on every SQLAlchemy session (idempotent)."""
    if not event.contains(Session, "after_commit", _flush_pending):
        event.listen(Session, "after_commit", _flush_pending)
        event.listen(Session, "after_soft_rollback", _drop_pending)
