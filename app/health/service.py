"""Readiness: the database answers, the schema is at the migration head, Redis answers, and every queue has
a worker whose heartbeat is younger than ``queue.worker_heartbeat_max_age_seconds``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from alembic.script import ScriptDirectory
from flask import Flask
from flask_migrate import Migrate
from sqlalchemy import Connection, inspect, text

from app.extensions import db
from app.queue.heartbeat import last_heartbeat, worker_heartbeats
from app.queue.queues import QueueName, get_redis


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str = ""


def migration_head(app: Flask) -> str | None:
    """The head revision of ``migrations/`` (read once per process; heads do not change at runtime)."""
    cached = app.extensions.get("hongli.migration_head")
    if cached is None:
        migrate: Migrate = app.extensions["migrate"]
        config = migrate.migrate.get_config(migrate.directory)
        cached = ScriptDirectory.from_config(config).get_current_head() or ""
        app.extensions["hongli.migration_head"] = cached
    return cached or None


def _current_revision(conn: Connection) -> str | None:
    # Read alembic_version directly: MigrationContext logs at INFO on every probe.
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def check_readiness(app: Flask) -> dict[str, Any]:
    checks: dict[str, Check] = {}
    current: str | None = None
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            current = _current_revision(conn)
        checks["database"] = Check(True)
    except Exception as exc:
        checks["database"] = Check(False, type(exc).__name__)
    head = migration_head(app)
    if checks["database"].ok:
        checks["migrations"] = Check(current == head, f"current={current} head={head}")
    else:
        checks["migrations"] = Check(False, "database unreachable")
    heartbeat: datetime | None = None
    beats: dict[str, datetime] | None = None
    try:
        get_redis(app).ping()
        checks["redis"] = Check(True)
        heartbeat = last_heartbeat(app)
        beats = worker_heartbeats(app)
    except Exception as exc:
        checks["redis"] = Check(False, type(exc).__name__)
    max_age = app.extensions["hongli.settings"].queue.worker_heartbeat_max_age_seconds
    if max_age:
        checks.update(_worker_checks(beats, max_age))
    ready = all(check.ok for check in checks.values())
    return {
        "status": "ready" if ready else "unready",
        "checks": {name: {"ok": c.ok, "detail": c.detail} for name, c in checks.items()},
        "worker_heartbeat": heartbeat,
    }


def _worker_checks(beats: dict[str, datetime] | None, max_age: int) -> dict[str, Check]:
    """``workers.<queue>``: a worker listening to the queue wrote its heartbeat within ``max_age`` s."""
    now = datetime.now(UTC)
    checks = {}
    for queue in QueueName:
        name = f"workers.{queue.value}"
        if beats is None:
            checks[name] = Check(False, "redis unreachable")
        elif queue.value not in beats:
            checks[name] = Check(False, "no worker heartbeat")
        else:
            age = (now - beats[queue.value]).total_seconds()
            fresh = age <= max_age
            checks[name] = Check(
                fresh, f"last heartbeat {age:.0f}s ago" + ("" if fresh else f" (> {max_age}s)")
            )
    return checks
