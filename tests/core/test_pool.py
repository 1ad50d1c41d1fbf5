"""Pooled connections are pinged only after sitting idle: a dead one is then replaced before use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from app.core.pool import install_idle_ping


@pytest.fixture
def admin(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def _pool_of_one(database_url: str, idle_seconds: float) -> Engine:
    engine = create_engine(database_url, pool_size=1, max_overflow=0, pool_pre_ping=False)
    install_idle_ping(engine, idle_seconds=idle_seconds)
    return engine


def _backend(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _kill(admin: Engine, pid: int) -> None:
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def test_a_connection_killed_while_idle_is_replaced_before_use(database_url: str, admin: Engine) -> None:
    engine = _pool_of_one(database_url, idle_seconds=0.0)  # every returned connection counts as idle
    first = _backend(engine)
    _kill(admin, first)

    assert _backend(engine) not in (first, 0)
    engine.dispose()


def test_a_connection_used_moments_ago_is_not_pinged(database_url: str, admin: Engine) -> None:
    engine = _pool_of_one(database_url, idle_seconds=3600.0)
    first = _backend(engine)
    _kill(admin, first)

    # No ping: the dead connection is used, fails once, and the pool starts afresh.
    with pytest.raises(OperationalError):
        _backend(engine)
    assert _backend(engine) != first
    engine.dispose()


def test_a_request_on_a_connection_lost_moments_ago_answers_503_and_the_next_is_served(
    app: Any, settings: Any, app_factory: Any, admin: Engine
) -> None:
    """Between two uses closer than the idle ping's threshold a connection can die unseen: the request
    that meets it gets a clean 503 with Retry-After (nothing was committed), never a 500, and the pool
    serves the next one on a fresh connection. (``app``: the schema migrated.)"""
    from app.extensions import db

    web = app_factory(
        settings.model_copy(update={"database": settings.database.model_copy(update={"pool_size": 1})})
    )
    with web.app_context():
        pid = int(db.session.execute(text("SELECT pg_backend_pid()")).scalar_one())
        db.session.remove()
    _kill(admin, pid)
    client = web.test_client()
    headers = {"Authorization": "Bearer not-a-token", "X-WX-AppId": "wx0000000000000000"}

    lost = client.get("/api/mp/v1/me", headers=headers)
    again = client.get("/api/mp/v1/me", headers=headers)

    assert (lost.status_code, lost.json["error"]["code"], lost.headers["Retry-After"]) == (
        503,
        "database_unavailable",
        "1",
    )
    assert again.status_code == 401
