"""SQLite as safe as PostgreSQL: every writing transaction takes the database's write lock when it begins.

pysqlite on its own begins a transaction only at the first INSERT/UPDATE/DELETE, so the reads a guard
makes before its write run outside any transaction, and ``FOR UPDATE`` is dropped: two requests would
both read "pending" and both write. Here pysqlite emits no BEGIN of its own and every transaction starts
with ``BEGIN IMMEDIATE``: the one write lock is taken at once, so writing transactions are serial. (The
recipe is SQLAlchemy's own: "Serializable isolation / Savepoints / Transactional DDL" in the pysqlite
dialect's documentation.) A transaction that cannot get the lock within the busy timeout fails with
"database is locked", answered 503 with Retry-After by :mod:`app.core.http` — nothing of it committed.

Transactions known to only read begin deferred (``BEGIN``) instead, so they never wait for a writer
(WAL gives them a snapshot): those of a GET/HEAD/OPTIONS request, and those after a view's final
commit (the answer is being built). Should one write after all, it still cannot race: SQLite refuses to
upgrade a snapshot another writer has moved past (an error, so a 503), and waits otherwise.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection, Engine, event

_READS_ONLY: ContextVar[bool] = ContextVar("hongli_sqlite_reads_only", default=False)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def install_serialisation(engine: Engine, *, busy_timeout_ms: int) -> None:
    """Set up ``engine`` (SQLite) as the module docstring says; once, in ``create_app``."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite emits no BEGIN of its own; on_begin does
        cursor = dbapi_connection.cursor()
        # WAL: readers (and other processes' pings) proceed while one transaction writes.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    def on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN" if _READS_ONLY.get() else "BEGIN IMMEDIATE")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)


def expect_reads_only(reads_only: bool) -> None:
    """Say whether the transactions that follow in this request (or thread) only read."""
    _READS_ONLY.set(reads_only)
