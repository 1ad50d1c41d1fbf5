"""Jobs are handed to RQ only when the transaction commits, and dropped when it rolls back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis as redis_lib
from flask import Flask
from rq.job import Job, JobStatus
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.queue import QueueName, enqueue_after_commit, get_queue
from app.queue.heartbeat import heartbeat_key

ROOT = Path(__file__).resolve().parents[2]


def test_job_is_enqueued_on_commit_not_before(
    app: Flask, db_session: Session, redis: redis_lib.Redis
) -> None:
    queue = get_queue(QueueName.DEFAULT)
    db_session.execute(text("SELECT 1"))
    enqueue_after_commit("jobs.maintenance.record_heartbeat", job_id="hb-commit")
    assert queue.count == 0, "nothing may reach Redis before the commit"
    db_session.commit()
    assert queue.job_ids == ["hb-commit"]
    assert Job.fetch("hb-commit", connection=redis).func_name == "jobs.maintenance.record_heartbeat"


def test_job_is_dropped_on_rollback(app: Flask, db_session: Session, redis: redis_lib.Redis) -> None:
    queue = get_queue(QueueName.DEFAULT)
    enqueue_after_commit("jobs.maintenance.record_heartbeat", job_id="hb-rollback")
    db_session.rollback()
    db_session.commit()  # a later commit must not resurrect the dropped job
    assert queue.count == 0
    enqueue_after_commit("jobs.maintenance.record_heartbeat", job_id="hb-after")
    db_session.commit()
    assert queue.job_ids == ["hb-after"]


def test_job_goes_to_the_named_queue(app: Flask, db_session: Session, redis: redis_lib.Redis) -> None:
    enqueue_after_commit("jobs.maintenance.record_heartbeat", queue=QueueName.SWEEPS, job_id="hb-sweeps")
    db_session.commit()
    assert get_queue(QueueName.SWEEPS).job_ids == ["hb-sweeps"]
    assert get_queue(QueueName.DEFAULT).count == 0
    assert get_queue(QueueName.SWEEPS).name == "hongli-test-sweeps"


def test_jobs_must_be_named_by_dotted_path(app: Flask, db_session: Session) -> None:
    with pytest.raises(ValueError, match="dotted path"):
        enqueue_after_commit("record_heartbeat")


def test_worker_runs_jobs_inside_the_app_context(
    app: Flask, child_env: dict[str, str], db_session: Session, redis: redis_lib.Redis
) -> None:
    """The real worker command, in burst mode, runs a committed job that needs the app."""
    enqueue_after_commit("jobs.maintenance.record_heartbeat", job_id="hb-worker")
    db_session.commit()
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--burst", "--queue", "default"],
        cwd=ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    job = Job.fetch("hb-worker", connection=redis)
    assert job.get_status() == JobStatus.FINISHED, result.stderr
    assert redis.get(heartbeat_key(app)).decode() == job.return_value()
