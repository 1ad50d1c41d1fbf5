"""Probes: /healthz is liveness; /readyz checks database, Redis, the migration head and a live worker per
queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient

from app.queue import QueueName
from app.queue.heartbeat import beat
from app.settings import Settings
from tests.conftest import AppFactory

ROOT = Path(__file__).resolve().parent.parent
WORKER_CHECKS = {f"workers.{queue.value}" for queue in QueueName}


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_when_everything_is_up(app: Flask, client: FlaskClient) -> None:
    beat(app, list(QueueName))  # what a worker's heartbeat thread writes
    response = client.get("/readyz")
    assert response.status_code == 200, response.json
    body = response.json
    assert body["status"] == "ready"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True,
        "migrations": True,
        "redis": True,
    } | dict.fromkeys(WORKER_CHECKS, True)


def test_readyz_names_each_queue_without_a_live_worker(app: Flask, client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json["checks"]
    assert checks["database"]["ok"] and checks["redis"]["ok"] and checks["migrations"]["ok"]
    assert {name: checks[name] for name in WORKER_CHECKS} == {
        name: {"ok": False, "detail": "no worker heartbeat"} for name in WORKER_CHECKS
    }
    # A worker listening only to payouts makes that queue ready, and only that one.
    beat(app, [QueueName.PAYOUTS])
    checks = client.get("/readyz").json["checks"]
    assert [name for name in sorted(WORKER_CHECKS) if checks[name]["ok"]] == ["workers.payouts"]
    # A heartbeat older than queue.worker_heartbeat_max_age_seconds (60) is a dead worker.
    beat(app, list(QueueName), now=datetime.now(UTC) - timedelta(seconds=61))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert not any(response.json["checks"][name]["ok"] for name in WORKER_CHECKS)
    assert "(> 60s)" in response.json["checks"]["workers.payouts"]["detail"]


def test_readyz_may_leave_workers_out(
    settings: Settings, app_factory: AppFactory, client: FlaskClient
) -> None:
    web_only = settings.model_copy(
        update={"queue": settings.queue.model_copy(update={"worker_heartbeat_max_age_seconds": 0})}
    )
    response = app_factory(web_only).test_client().get("/readyz")
    assert response.status_code == 200, response.json
    assert set(response.json["checks"]) == {"database", "migrations", "redis"}


@pytest.mark.slow
def test_readyz_turns_ready_when_a_real_worker_heartbeats_and_unready_when_it_is_gone(
    client: FlaskClient, child_env: dict[str, str], redis: redis_lib.Redis, tmp_path: Path
) -> None:
    assert client.get("/readyz").status_code == 503  # no worker yet
    env = child_env | {
        "HONGLI_QUEUE__WORKER_HEARTBEAT_SECONDS": "1",
        "HONGLI_QUEUE__WORKER_HEARTBEAT_MAX_AGE_SECONDS": "2",
    }
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--no-periodic"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.2)
        assert all(client.get("/readyz").json["checks"][name]["ok"] for name in WORKER_CHECKS)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        log.close()
    # Its heartbeats age past the limit (60 s for this app): simulated by writing one that old.
    beat(client.application, list(QueueName), now=datetime.now(UTC) - timedelta(seconds=61))
    assert client.get("/readyz").status_code == 503


def test_readyz_fails_when_redis_is_down(settings: Settings, app_factory: AppFactory) -> None:
    dead = settings.model_copy(
        update={"redis": settings.redis.model_copy(update={"url": "redis://127.0.0.1:1/0"})}
    )
    response = app_factory(dead).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["redis"]["ok"] is False
    assert response.json["checks"]["database"]["ok"] is True


def test_readyz_fails_when_schema_is_not_migrated(
    settings: Settings, empty_database_url: str, app_factory: AppFactory
) -> None:
    unmigrated = settings.model_copy(
        update={"database": settings.database.model_copy(update={"url": empty_database_url})}
    )
    response = app_factory(unmigrated).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["database"]["ok"] is True
    assert response.json["checks"]["migrations"]["ok"] is False
