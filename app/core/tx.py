"""The one place a request's unit of work is committed (greppable: ``commit()`` after the service)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy import Engine

from app.core.sqlite import expect_reads_only
from app.extensions import db

P = ParamSpec("P")
R = TypeVar("R")


def commit(*, final: bool = True) -> None:
    """Commit the current session: views call it after their one service call has returned.

    ``final``: the request's unit of work is done; what follows only builds the answer (on SQLite its
    reads then need not wait for the write lock). A commit before the view's own work says False.
    """
    db.session.commit()
    if final:
        expect_reads_only(True)


# ---------------------------------------------------------------- statements that commit alone

_AUTOCOMMIT = "AUTOCOMMIT"


def statements_commit_alone(view: Callable[P, R]) -> Callable[P, R]:
    """A view whose one write is a single atomic statement (a pool grab): on PostgreSQL each of its
    statements commits by itself (autocommit), so neither its reads nor that write pay a BEGIN and a
    COMMIT round trip. Before anything that needs a transaction (several writes that must hold together)
    it calls :func:`transaction_from_here`. Elsewhere — SQLite, whose writes take the write lock in a
    transaction; a session already in a transaction or bound to one (the tests' savepoints) — it changes
    nothing."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        bind = db.session.get_bind()
        if (
            isinstance(bind, Engine)
            and bind.dialect.name == "postgresql"
            and not db.session().in_transaction()
        ):
            db.session.connection(execution_options={"isolation_level": _AUTOCOMMIT})
        return view(*args, **kwargs)

    return wrapper


def transaction_from_here() -> None:
    """Leave :func:`statements_commit_alone`'s mode: the statements from here run in one transaction (the
    connection goes back to the pool, which restores its isolation level). Within a transaction already,
    nothing changes: what follows joins it."""
    session = db.session()
    if session.in_transaction():
        options = session.connection().get_execution_options()
        if options.get("isolation_level") == _AUTOCOMMIT:
            session.commit()
