"""The one place a request's unit of work is committed (greppable: ``commit()`` after the service)."""

from __future__ import annotations

from app.core.sqlite import expect_reads_only
from app.extensions import db


def commit(*, final: bool = True) -> None:
    """Commit the current session: views call it after their one service call has returned.

    ``final``: the request's unit of work is done; what follows only builds the answer (on SQLite its
    reads then need not wait for the write lock). A commit before the view's own work says False.
    """
    db.session.commit()
    if final:
        expect_reads_only(True)
