"""A connection is pinged before use only when it has sat idle in the pool, not on every checkout.

SQLAlchemy's ``pool_pre_ping`` spends a round trip on every checkout, i.e. on every request — a quarter of
a repeated payment notification's. Under load a connection is back in use within milliseconds of its
return, and a server restart, a failover or an idle-connection timeout shows up on connections that have
waited; those are pinged (after ``PING_AFTER_IDLE_SECONDS``) and, if dead, replaced before use, as
pre-ping would. What is left is a connection broken within those seconds of its last use: its request
fails once (a WeChat notification is retried by WeChat), and SQLAlchemy, seeing a disconnect, discards
every pooled connection made before it. ``pool_recycle`` still bounds a connection's age.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, event, exc

PING_AFTER_IDLE_SECONDS = 10.0
_RETURNED_AT = "hongli_returned_at"


def install_idle_ping(engine: Engine, *, idle_seconds: float = PING_AFTER_IDLE_SECONDS) -> None:
    """Ping ``engine``'s pooled connections on checkout when idle ``idle_seconds`` or more (once, in
    ``create_app``; with ``pool_pre_ping`` off)."""

    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned_at = record.info.get(_RETURNED_AT)
        if returned_at is None or time.monotonic() - returned_at < idle_seconds:
            return  # a new connection, or one in use moments ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as err:
            # The pool discards this connection and checks out a new one (as pre-ping does).
            raise exc.DisconnectionError(
                f"pooled connection idle {idle_seconds:.0f}s failed its ping"
            ) from err

    event.listen(engine, "checkin", on_checkin)
    event.listen(engine, "checkout", on_checkout)
