"""Structural guards: a state change decided by the row count of one conditional UPDATE.

``SELECT … FOR UPDATE`` then a check in Python holds only where the engine locks the row (SQLite drops
``FOR UPDATE``); ``UPDATE … WHERE id = … AND status = …`` holds on every engine at every isolation
level, because the database re-checks the condition on the row it writes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, update

from app.core.db import Base
from app.extensions import db


def guarded_update(model: type[Base], row_id: int, *conditions: ColumnElement[bool], **values: Any) -> bool:
    """``UPDATE model SET values WHERE id = row_id AND conditions``: True if the row was changed.

    The session's copy of the row (if loaded) has the written attributes expired, so the next read
    sees what the database holds. Pending changes are flushed first, so they are not lost or reordered.
    """
    db.session.flush()
    table_id = model.__table__.c.id
    result = db.session.execute(
        update(model)
        .where(table_id == row_id, *conditions)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    loaded = db.session.identity_map.get(db.session.identity_key(model, row_id))
    if loaded is not None:
        db.session.expire(loaded, list(values))
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
