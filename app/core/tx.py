"""The one place a request's unit of work is committed (greppable: ``commit()`` after the service)."""

from __future__ import annotations

from app.extensions import db


def commit() -> None:
    """Commit the current session: views call it after their one service call has returned."""
    db.session.commit()
