"""The one error family services raise; rendered by :mod:`app.core.http` as the JSON envelope."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class DomainError(Exception):
    """A failure a caller can act on: carries a stable ``code``, an HTTP status and details."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})


class InvalidInput(DomainError):
    status = 422
    code = "validation_error"


class Unauthenticated(DomainError):
    status = 401
    code = "unauthenticated"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class RateLimited(DomainError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_seconds: int, details: Mapping[str, Any] | None = None):
        super().__init__(message, details=details)
        self.retry_after_seconds = retry_after_seconds


class Unavailable(DomainError):
    status = 503
    code = "unavailable"


class ConcurrentChange(DomainError):
    """A guarded row changed under a transaction: nothing of it was committed; asking again is safe."""

    status = 409
    code = "concurrent_change"
