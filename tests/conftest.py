"""Suite-wide fixtures: settings, app, client, one rolled-back savepoint per test, a flushed Redis.

PostgreSQL and Redis come from ``make test`` (``scripts/test.sh``), which exports
``TEST_DATABASE_URL`` and ``TEST_REDIS_URL``. Tests that need neither run without them.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient
from flask_sqlalchemy.query import Query as FlaskQuery
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from app import create_app
from app.extensions import db
from app.merchants.snapshots import forget_merchants
from app.settings import Settings, load_settings

# Unique per run, so concurrent runs against one server never drop each other's database.
TEST_DB_NAME = f"hongli_test_{os.getpid()}"
AppFactory = Callable[[Settings], Flask]

# ---------------------------------------------------------------- no network but this machine

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise OSError(f"tests may not reach the network: connect to {address!r} refused")
    return _real_connect(self, address)


def pytest_configure(config: pytest.Config) -> None:
    socket.socket.connect = _loopback_only  # type: ignore[method-assign]


def pytest_unconfigure(config: pytest.Config) -> None:
    socket.socket.connect = _real_connect  # type: ignore[method-assign]


# ---------------------------------------------------------------- services


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the suite with `make test` (it starts PostgreSQL and Redis)")
    return value


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, empty database for this run, dropped at the end."""
    server = make_url(_required_env("TEST_DATABASE_URL"))
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {TEST_DB_NAME} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {TEST_DB_NAME}"))
    yield server.set(database=TEST_DB_NAME).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {TEST_DB_NAME} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def empty_database_url() -> Iterator[str]:
    """A second, empty database on the same server (for migration and readiness tests)."""
    server = make_url(_required_env("TEST_DATABASE_URL"))
    name = f"hongli_empty_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    yield server.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _required_env("TEST_REDIS_URL")


@pytest.fixture(scope="session")
def settings(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Test settings: built-in defaults, the throwaway services, and nothing from the environment."""
    empty_config = tmp_path_factory.mktemp("config") / "config.toml"
    empty_config.write_text("")
    return load_settings(
        config_path=empty_config,
        environ={
            "HONGLI_ENV": "test",
            "HONGLI_DATABASE__URL": database_url,
            "HONGLI_REDIS__URL": redis_url,
            "HONGLI_QUEUE__PREFIX": "hongli-test",
            "HONGLI_LOGGING__FORMAT": "text",
        },
    )


@pytest.fixture(scope="session")
def app(settings: Settings) -> Iterator[Flask]:
    """The application, with the schema migrated to head once per run."""
    from flask_migrate import upgrade

    application = create_app(settings)
    with application.app_context():
        upgrade()
        yield application
        db.engine.dispose()


@pytest.fixture
def child_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """Environment for a child process (worker, CLI) configured exactly like :func:`settings`."""
    empty_config = tmp_path / "child-config.toml"
    empty_config.write_text("")
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("HONGLI_")}
    return inherited | {
        "HONGLI_CONFIG": str(empty_config),
        "HONGLI_ENV": settings.env.value,
        "HONGLI_DATABASE__URL": settings.database.url,
        "HONGLI_REDIS__URL": settings.redis.url,
        "HONGLI_QUEUE__PREFIX": settings.queue.prefix,
        "HONGLI_LOGGING__FORMAT": settings.logging.format,
    }


@pytest.fixture
def app_factory() -> Iterator[AppFactory]:
    """Build extra apps (other settings) whose connection pools are closed after the test."""
    built: list[Flask] = []

    def build(custom: Settings) -> Flask:
        application = create_app(custom)
        built.append(application)
        return application

    yield build
    for application in built:
        with application.app_context():
            db.engine.dispose()


class _TestScopedSession(scoped_session[Session]):
    """The test's session outlives app-context teardowns (a nested request — e.g. a sandbox notification
    delivered to the app while the test waits — must not close the test's transaction)."""

    def remove(self) -> None:
        pass

    def really_remove(self) -> None:
        super().remove()


@pytest.fixture
def db_session(app: Flask) -> Iterator[Session]:
    """One transaction per test, rolled back at the end; ``commit()`` inside only releases a savepoint."""
    forget_merchants(app)  # snapshots of merchants an earlier test created and rolled back
    connection = db.engine.connect()
    outer = connection.begin()
    original = db.session
    # A plain Session: Flask-SQLAlchemy's own ignores a session-level bind and would use the engine,
    # committing for real.
    factory = sessionmaker(bind=connection, join_transaction_mode="create_savepoint", query_cls=FlaskQuery)
    scoped = _TestScopedSession(factory)
    db.session = scoped
    try:
        yield scoped()
    finally:
        scoped.really_remove()
        db.session = original
        outer.rollback()
        connection.close()


@pytest.fixture
def redis(app: Flask) -> Iterator[redis_lib.Redis]:
    """The app's Redis, emptied before the test."""
    from app.queue import get_redis

    connection = get_redis(app)
    connection.flushdb()
    yield connection


@pytest.fixture(scope="session")
def sandbox_keys() -> list[Any]:
    """RSA keys for sandbox merchants: slow to make, so made once per run."""
    from tests.sandbox import make_key_pool

    return make_key_pool()


@pytest.fixture
def sandbox(settings: Settings, app: Flask, sandbox_keys: list[Any]) -> Iterator[Any]:
    """The WeChat sandbox in process; Hongli's WeChat base URLs are routed to it."""
    from tests.sandbox import open_sandbox

    yield from open_sandbox(settings, app, sandbox_keys)


@pytest.fixture
def client(app: Flask, db_session: Session, redis: redis_lib.Redis) -> FlaskClient:
    return app.test_client()
