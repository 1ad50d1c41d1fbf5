"""The pool errors a caller can act on (codes are part of the API)."""

from __future__ import annotations

from app.core.errors import Conflict, Forbidden, NotFound


class PoolNotFound(NotFound):
    code = "pool_not_found"


class PoolClosed(Conflict):
    code = "pool_closed"


class PoolEmpty(Conflict):
    code = "pool_empty"


class AlreadyGrabbed(Conflict):
    code = "already_grabbed"


class NotEligible(Forbidden):
    code = "not_eligible"


class ConsumerBanned(Forbidden):
    code = "consumer_banned"


class PoolBusy(Conflict):
    """The share handed out was taken meanwhile (Redis was being rebuilt): asking again is safe."""

    code = "pool_busy"
