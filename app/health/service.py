"""Readiness: the database answers, Redis answers, and the schema is at the migration head."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alembic.script import ScriptDirectory
from flask import Flask
from flask_migrate import Migrate
from sqlalchemy import Connection, inspect, text

from app.extensions import db
from app.queue.heartbeat import last_heartbeat
from app.queue.queues import get_redis


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
    try:
        get_redis(app).ping()
        checks["redis"] = Check(True)
        heartbeat = last_heartbeat(app)
    except Exception as exc:
        checks["redis"] = Check(False, type(exc).__name__)
    ready = all(check.ok for check in checks.values())
    return {
        "status": "ready" if ready else "unready",
        "checks": {name: {"ok": c.ok, "detail": c.detail} for name, c in checks.items()},
        "worker_heartbeat": heartbeat,
    }
