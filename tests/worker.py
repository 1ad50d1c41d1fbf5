"""Running what the worker would, in the test's process: queued jobs by name, and the ledger's checks."""

from __future__ import annotations

from app.ledger.checks import run_checks
from app.queue import QueueName, get_queue


def run_jobs(name: str) -> int:
    """Run the queued jobs ``name`` (dotted path) as a worker would; how many ran."""
    queue = get_queue(QueueName.DEFAULT)
    ran = 0
    for job in queue.jobs:
        if job.func_name == name:
            job.perform()
            queue.remove(job)
            ran += 1
    return ran


def ledger_clean() -> None:
    """Every registered ledger (and domain) check finds nothing."""
    failures = [(result.name, result.violations) for result in run_checks() if result.violations]
    assert failures == []
