"""Structured (JSON) logging with the request id on every line and secrets scrubbed."""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import IO, Any

from flask import g, has_request_context
from pythonjsonlogger.json import JsonFormatter

_HANDLER_NAME = "hongli"
# Attribute names whose values are never logged, whatever their content.
SECRET_FIELD = re.compile(
    r"(secret|password|passwd|private_key|api_?key|apiv3|session_key|token|sign|cert|authorization|cookie)",
    re.IGNORECASE,
)
_PEM = re.compile(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----", re.DOTALL)
_KEY_VALUE = re.compile(
    r"(?P<key>[\"']?\w*(?:secret|password|private_key|api_?key|apiv3_key|session_key|access_token|"
    r"refresh_token|token|authorization|paysign|sign)\w*[\"']?\s*[=:]\s*)(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;&}]+)",
    re.IGNORECASE,
)
REDACTED = "[redacted]"
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def redact_text(text: str) -> str:
    """Remove PEM blocks and ``key=value`` pairs whose key names a secret."""
    text = _PEM.sub(REDACTED, text)
    return _KEY_VALUE.sub(lambda m: m.group("key") + REDACTED, text)


class ContextFilter(logging.Filter):
    """Adds ``request_id`` (or the RQ job id) and scrubs secrets from the message and extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = g.get("request_id") if has_request_context() else None
        record.msg = redact_text(record.getMessage())
        record.args = None
        for name, value in list(vars(record).items()):
            if name in _STANDARD_ATTRS or name == "request_id":
                continue
            if SECRET_FIELD.search(name):
                setattr(record, name, REDACTED)
            elif isinstance(value, str):
                setattr(record, name, redact_text(value))
        return True


def configure_logging(level: str, fmt: str) -> None:
    """Install one stderr handler on the root logger (idempotent: re-configuring replaces it)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    root.addHandler(make_handler(sys.stderr, fmt))
    root.setLevel(level)


def make_handler(stream: IO[str], fmt: str) -> logging.Handler:
    """A handler writing scrubbed lines (JSON or text) with request ids to ``stream``."""
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(ContextFilter())
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
    formatter.converter = time.gmtime
    formatter.default_time_format = "%Y-%m-%dT%H:%M:%S"
    formatter.default_msec_format = "%s.%03dZ"
    handler.setFormatter(formatter)
    return handler


def log_extra(**fields: Any) -> dict[str, Any]:
    """Structured fields for ``logger.info(msg, extra=log_extra(...))``."""
    return fields
