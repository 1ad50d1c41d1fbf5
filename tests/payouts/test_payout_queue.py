"""Payout rows are the outbox: a payout is queued after its transaction commits, and the sweep queues every
due row again (whatever happened to the first job); the row's lease, not the job id, guards the submission."""

from __future__ import annotations

from typing import Any

from app.core.db import utcnow
from app.extensions import db
from app.queue import QueueName, get_queue
from jobs.payouts import enqueue_due_payouts, process_payout
from tests.payouts.conftest import Payee, ledger_clean


def _queued() -> list[tuple[str, tuple[Any, ...]]]:
    queue = get_queue(QueueName.PAYOUTS)
    return [(job.func_name, job.args) for job in queue.get_jobs()]


def test_payout_queued_after_commit_and_swept_again(payee: Payee) -> None:
    created = payee.withdraw(1000, "queued")
    payout = payee.payout_of(created.json["id"])
    assert _queued() == [("jobs.payouts.process_payout", (payout.id,))]

    # The first job is lost (Redis flushed, worker died…): the row is still due, so the sweep queues it.
    get_queue(QueueName.PAYOUTS).empty()
    assert enqueue_due_payouts() == 1
    assert _queued() == [("jobs.payouts.process_payout", (payout.id,))]

    # Two copies of the job (RQ is at-least-once) make one submission.
    assert process_payout(payout.id) == "accepted"
    assert process_payout(payout.id) == "skipped"  # accepted; its next poll is not due yet
    db.session.refresh(payout)
    assert payout.submit_calls == 1
    assert len(payee.sandbox_payouts()) == 1
    assert payout.next_attempt_at > utcnow()
    get_queue(QueueName.PAYOUTS).empty()
    assert enqueue_due_payouts() == 0
    ledger_clean()


def test_rejected_request_queues_nothing(payee: Payee) -> None:
    assert payee.withdraw(300_01, "too-much").status_code == 409
    assert _queued() == []
