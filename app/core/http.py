"""HTTP plumbing shared by every blueprint: request ids, access log, and the one error envelope."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from flask import Flask, Response, g, jsonify, request
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException

from app.core.errors import DomainError, RateLimited
from app.core.sqlite import SAFE_METHODS, expect_reads_only

logger = logging.getLogger("hongli.http")
REQUEST_ID_HEADER = "X-Request-ID"
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> tuple[Response, int]:
    """The JSON error envelope: ``{"error": {"code", "message", "details"}}``."""
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return jsonify(body), status


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _handle_domain_error(exc: DomainError) -> tuple[Response, int]:
    response, status = error_response(exc.status, exc.code, exc.message, exc.details)
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after_seconds)
    return response, status


def _handle_http_exception(exc: HTTPException) -> tuple[Response, int]:
    status = exc.code or 500
    if status == 422:
        # webargs (through flask-smorest) attaches field errors as data["messages"].
        messages = getattr(exc, "data", {}).get("messages", {})
        fields = messages.get("json", messages) if isinstance(messages, dict) else messages
        return error_response(422, "validation_error", "the request is not valid", {"fields": fields})
    response, status = error_response(status, _snake(exc.name), exc.description or exc.name)
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response, status


# SQLSTATEs of a transaction PostgreSQL gave up on because of another one: safe to retry as a whole.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03"})  # serialization, deadlock, lock timeout


def _handle_concurrency(exc: DBAPIError) -> tuple[Response, int] | None:
    """A clean answer for a transaction that lost to a concurrent one (nothing of it was committed)."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    locked = isinstance(exc, OperationalError) and "database is locked" in str(exc.orig)
    if locked or sqlstate in _RETRYABLE_SQLSTATES:
        logger.warning("request lost to a concurrent transaction (%s); answered 503", sqlstate or "locked")
        response, status = error_response(
            503, "database_busy", "the database is busy with concurrent requests; retry shortly"
        )
        response.headers["Retry-After"] = "1"
        return response, status
    unique = sqlstate == "23505" or "UNIQUE constraint failed" in str(exc.orig)  # PostgreSQL, SQLite
    if isinstance(exc, IntegrityError) and unique:
        # A unique constraint decided between two concurrent requests and no service caught it: the
        # other request won; asking again shows its result. Logged as an error, with the traceback: a
        # backstop constraint (one payout per withdrawal, …) firing means a guard upstream was missed.
        logger.error("a unique constraint refused a write no service expected", exc_info=exc)
        return error_response(
            409, "concurrent_conflict", "a concurrent request did this first; fetch the current state"
        )
    return None


# While Redis is away (a restart, a failover) a call that needs it cannot be served; nothing of it was
# committed after the failed Redis step. The client's next try reaches a new connection, so this ends by
# itself once Redis answers again.
REDIS_RETRY_AFTER_SECONDS = 5


def _handle_redis_unavailable(exc: Exception) -> tuple[Response, int]:
    logger.warning("request needed Redis, which is not answering (%s); answered 503", type(exc).__name__)
    response, status = error_response(
        503, "redis_unavailable", "a service this request needs is briefly unavailable; retry shortly"
    )
    response.headers["Retry-After"] = str(REDIS_RETRY_AFTER_SECONDS)
    return response, status


def _handle_lost_connection(exc: DBAPIError) -> tuple[Response, int]:
    """The database connection broke under the request (a restart, a failover, a connection killed between
    two uses too close together for the idle ping): nothing was committed, the pool has dropped it, and
    the next try gets a fresh one."""
    logger.warning(
        "the database connection was lost during a request (%s); answered 503", type(exc.orig).__name__
    )
    response, status = error_response(
        503, "database_unavailable", "the database connection was lost; retry shortly"
    )
    response.headers["Retry-After"] = "1"
    return response, status


def _handle_unexpected(exc: Exception) -> tuple[Response, int]:
    if isinstance(exc, HTTPException):
        return _handle_http_exception(exc)
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return _handle_redis_unavailable(exc)
    if isinstance(exc, DBAPIError) and (answer := _handle_concurrency(exc)) is not None:
        return answer
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return _handle_lost_connection(exc)
    logger.exception("unhandled error")
    return error_response(500, "internal_error", "internal server error; quote the request id to support")


def _expect_writes_unless_safe() -> None:
    expect_reads_only(request.method in SAFE_METHODS)


def _forget_request(_exc: BaseException | None) -> None:
    expect_reads_only(False)  # what runs next in this thread (a job, a CLI command) may write


def _assign_request_id() -> None:
    supplied = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = supplied if _CLIENT_REQUEST_ID.match(supplied) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _finish_request(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
    started = g.get("request_started")
    elapsed_ms = int((time.perf_counter() - started) * 1000) if started else None
    logger.info(
        "request",
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": elapsed_ms,
            "remote_addr": request.remote_addr,
        },
    )
    return response


def init_http(app: Flask) -> None:
    """Install request ids, the access log and the error handlers (after flask-smorest's own)."""
    app.before_request(_assign_request_id)
    app.before_request(_expect_writes_unless_safe)
    app.teardown_request(_forget_request)
    app.after_request(_finish_request)
    app.register_error_handler(DomainError, _handle_domain_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
