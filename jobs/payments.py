"""Payment jobs: refund submission (with retries), closing unpaid orders, daily reconciliation."""

from __future__ import annotations

import logging
from datetime import timedelta

from rq import Retry
from sqlalchemy import select

from app.core.db import utcnow
from app.extensions import db
from app.payments import refunds, service
from app.payments.models import Refund, RefundStatus
from app.queue import QueueName, get_queue

logger = logging.getLogger("hongli.jobs.payments")
# Ambiguous or retryable WeChat answers are retried with the same refund number.
REFUND_RETRY = Retry(max=6, interval=[10, 30, 60, 300, 900, 3600])


def submit_refund(refund_id: int) -> str:
    """Submit one refund to WeChat; returns its state. Raises (so RQ retries) on unknown outcomes."""
    try:
        status = refunds.submit_refund(refund_id)
        db.session.commit()
        return status.value
    except Exception:
        db.session.rollback()
        raise


def retry_requested_refunds() -> int:
    """The outbox sweep: refunds still REQUESTED a while after creation are queued again."""
    cutoff = utcnow() - timedelta(minutes=2)
    ids = db.session.scalars(
        select(Refund.id)
        .where(Refund.status == RefundStatus.REQUESTED, Refund.created_at < cutoff)
        .limit(500)
    ).all()
    queue = get_queue(QueueName.DEFAULT)
    for refund_id in ids:
        queue.enqueue("jobs.payments.submit_refund", refund_id, retry=REFUND_RETRY)
    return len(ids)


def close_expired_orders() -> int:
    """Close orders whose time to pay has run out (each confirmed unpaid with WeChat first)."""
    return service.close_expired_orders()


def reconcile_yesterday() -> int:
    """Compare yesterday's WeChat trade bills with Hongli's records; returns the number of differences."""
    from app.payments.reconciliation import reconcile_all

    day = (utcnow() + timedelta(hours=8)).date() - timedelta(days=1)
    reports = reconcile_all(day)
    db.session.commit()
    differences = sum(len(r.differences) for r in reports)
    if differences:
        logger.error("trade reconciliation for %s found %d difference(s)", day, differences)
    return differences
