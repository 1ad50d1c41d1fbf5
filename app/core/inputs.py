"""The input policy at the edge: what every request must look like before a schema or a view sees it.

JSON bodies are refused (422) before they are parsed when nested too deep (the parser, and everything
after it, recurse: ``RecursionError``) or when a number is longer than any field accepts (Python refuses
to convert more than 4,300 digits: ``ValueError``); their size is bounded by ``MAX_CONTENT_LENGTH``
(413). Integer path segments are ASCII digits that fit a signed 64-bit column. Each field's own range
is its schema's (:mod:`app.core.fields`).
"""

from __future__ import annotations

import re

from flask import Flask, request
from werkzeug.routing import IntegerConverter

from app.core.errors import InvalidInput

#: The largest id (and integer path segment) accepted: a PostgreSQL ``bigint``.
ID_MAX = 2**63 - 1
#: The deepest nesting of arrays and objects a JSON body may have. Our deepest schema nests 4 levels.
MAX_JSON_DEPTH = 32
#: The longest number literal a JSON body may hold (the largest id has 19 digits).
MAX_JSON_NUMBER_CHARS = 64
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKETS = re.compile(rb"[\[\]{}]")
_JSON_LONG_NUMBER = re.compile(rb"[-+0-9.eE]{%d}" % (MAX_JSON_NUMBER_CHARS + 1))
# Text no column can store: NUL (PostgreSQL refuses it) and an unpaired UTF-16 surrogate (not UTF-8).
_JSON_UNSTORABLE = re.compile(
    rb"\\u0000"
    rb"|\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)
# Blueprints that answer in a format of their own (WeChat's) and check their bodies themselves.
_OWN_FORMAT_BLUEPRINTS = frozenset({"wechat_pay_notify"})


def json_body_problem(body: bytes) -> str | None:
    """Why ``body`` must not be parsed as JSON (too deep, too long a number, text no column can store),
    else None; judged without parsing it."""
    if b"\\u" in body and _JSON_UNSTORABLE.search(body):
        return "a string in the JSON body holds NUL or an unpaired surrogate"
    openings = body.count(b"[") + body.count(b"{")
    if openings <= MAX_JSON_DEPTH and len(body) <= MAX_JSON_NUMBER_CHARS:
        return None  # the common small body: nothing to scan
    outside_strings = _JSON_STRING.sub(b'""', body)
    if openings > MAX_JSON_DEPTH and _too_deep(outside_strings, MAX_JSON_DEPTH):
        return f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels"
    if _JSON_LONG_NUMBER.search(outside_strings):
        return f"the JSON body has a number longer than {MAX_JSON_NUMBER_CHARS} characters"
    return None


def _too_deep(outside_strings: bytes, limit: int) -> bool:
    depth = 0
    for bracket in _JSON_BRACKETS.findall(outside_strings):
        if bracket in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


class IdConverter(IntegerConverter):
    """``<int:…>`` in every route: 1 to 19 ASCII digits, at most :data:`ID_MAX`; anything else is a 404."""

    regex = r"[0-9]{1,19}"

    def __init__(self, map: object, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("max", ID_MAX)
        super().__init__(map, *args, **kwargs)  # type: ignore[arg-type]


def _check_request() -> None:
    if request.blueprint in _OWN_FORMAT_BLUEPRINTS:
        return
    if "\x00" in request.path or b"%00" in request.query_string:
        raise InvalidInput("the URL holds a NUL character")
    if any("\x00" in value for _, value in request.headers.items()):
        raise InvalidInput("a header holds a NUL character")
    if not request.is_json:
        return
    body = request.get_data(cache=True)  # over MAX_CONTENT_LENGTH: 413 in the error envelope
    if problem := json_body_problem(body):
        raise InvalidInput(
            problem, details={"max_depth": MAX_JSON_DEPTH, "max_number_chars": MAX_JSON_NUMBER_CHARS}
        )


def install_converters(app: Flask) -> None:
    """Bound ``<int:…>`` path segments; call before any blueprint is registered."""
    app.url_map.converters["int"] = IdConverter


def init_inputs(app: Flask) -> None:
    """Check every URL and JSON body before any view (or webargs) reads it."""
    app.before_request(_check_request)
