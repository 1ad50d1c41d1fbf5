"""Every operation in ``/openapi.json`` sent hostile values: no answer is a 5xx, none logs a traceback.

A hand-written walker over the document, not Schemathesis: it is deterministic and bounded by
construction (a fixed list of hostile values per parameter and per body field, no random search, one
pass of about 3,000 requests in under ten seconds), needs no new dependency to pin beside
our pinned Hypothesis, and it calls the app in-process through the test client of the session it must
share (the rolled-back savepoint, the sandbox), which Schemathesis' own runner would not use. What it
sends per operation, authenticated as the operation needs (shop key, consumer token, console owner):

* each path parameter: ids beyond 63 bits, Unicode digits, signs, exponents, over-long strings;
* each query parameter: the same, plus an empty value;
* the body: deep nesting (40, 1,000 and 100,000 levels), a number of 5,000 digits, not JSON, an
  empty body, a bare scalar, an array, a body over the size limit;
* each body field, one at a time (nested objects and list items included, two levels down), replaced
  by null, booleans, 2^63, 10^23, 2^53 + 1, -1, floats, NaN-like strings, Unicode digits, NUL, an
  unpaired surrogate, an over-long string, an array, an object and a nesting just under and over the
  depth limit.

Every 4xx answer with a JSON body must be the error envelope the document declares.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from openapi_schema_validator import OAS30Validator
from werkzeug.test import TestResponse

from app.core.db import utcnow
from app.core.inputs import MAX_JSON_DEPTH
from app.queue import QueueName
from app.queue.heartbeat import beat
from tests.campaigns.conftest import SEED_RULES
from tests.console_client import Console
from tests.payments.conftest import Shop

METHODS = ("get", "post", "put", "patch", "delete")
BIG_ID = "9223372036854775807"  # a valid id no row has: the handler runs and looks it up

PATH_VALUES = [
    "100000000000000000000000",  # 1e23
    "9223372036854775808",  # 2^63
    "1e23",
    "-1",
    "0",
    "²",
    "١٢٣",
    "１",
    "%00",
    "x" * 300,
    "%F0%9F%92%B0",
    "..%2F..%2Fetc",
]
QUERY_VALUES = [
    "",
    "100000000000000000000000",
    "9223372036854775808",
    "-9223372036854775809",
    "²",
    "١٢",
    "1.5",
    "1e23",
    "NaN",
    "null",
    "x" * 5_000,
    "\x00",
]


def _nest(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


FIELD_VALUES: list[Any] = [
    None,
    True,
    False,
    -1,
    0,
    2**53 + 1,
    2**63,
    -(2**63) - 1,
    10**23,
    1.5,
    1e308,
    "",
    "²³",
    "١٢٣",
    "NaN",
    "x" * 70_000,
    "\x00\ud7ff",
    "\ud800",
    [],
    [1, "a", None],
    {},
    {"$gt": ""},
    _nest(MAX_JSON_DEPTH - 4),
    _nest(MAX_JSON_DEPTH + 8),
]
RAW_BODIES: list[bytes] = [
    b"[" * 40 + b"]" * 40,
    b'{"a":' * 1_000 + b"1" + b"}" * 1_000,
    b"[" * 100_000 + b"]" * 100_000,
    b"1" + b"0" * 5_000,
    b'{"x": -1' + b"0" * 5_000 + b"}",
    b"not json",
    b"\xff\xfe\xfd",
    b"",
    b"null",
    b"[]",
    b'"x"',
    b"NaN",
    b'{"a": Infinity}',
    b'"' + b"x" * 1_100_000 + b'"',
]


class Caller:
    """Sends a request with the credentials its path needs."""

    def __init__(self, shop: Shop, owner: Console) -> None:
        self.shop = shop
        self.owner = owner

    def send(self, method: str, path: str, **kwargs: Any) -> TestResponse:
        if path.startswith("/api/console/"):
            kwargs["headers"] = self.owner.headers(kwargs.pop("headers", None))
            client: FlaskClient = self.owner.client
        else:
            client = self.shop.client
            if path.startswith("/api/shop/"):
                kwargs["headers"] = self.shop.shop_headers
            elif path.startswith("/api/mp/"):
                kwargs["headers"] = self.shop.consumer_headers
        return client.open(path, method=method.upper(), **kwargs)


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _example(spec: dict[str, Any], schema: dict[str, Any], depth: int = 0) -> Any:
    """A plausible value for ``schema`` (required fields only), so one hostile field is what fails."""
    schema = _resolve(spec, schema)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" and depth < 4:
        required = schema.get("required", [])
        return {
            k: _example(spec, v, depth + 1) for k, v in schema.get("properties", {}).items() if k in required
        }
    if kind == "array" and depth < 4:
        return [_example(spec, schema.get("items", {}), depth + 1)] * max(1, schema.get("minItems", 1))
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return 1
    if kind == "boolean":
        return True
    if kind == "string":
        if schema.get("format") == "date-time":
            return "2026-01-01T00:00:00+00:00"
        return "Hostile123" + "a" * max(0, schema.get("minLength", 0) - 10)  # fits our id/key patterns
    return {}


def _field_paths(
    spec: dict[str, Any], schema: dict[str, Any], prefix: tuple[Any, ...] = ()
) -> Iterator[tuple[Any, ...]]:
    """Every field two levels down: ``("items", 0, "quantity")`` for a field of a list's first item."""
    schema = _resolve(spec, schema)
    for name, sub in schema.get("properties", {}).items():
        path = (*prefix, name)
        yield path
        if len(prefix) >= 2:
            continue
        sub = _resolve(spec, sub)
        if sub.get("type") == "object":
            yield from _field_paths(spec, sub, path)
        elif sub.get("type") == "array" and _resolve(spec, sub.get("items", {})).get("type") == "object":
            yield from _field_paths(spec, sub["items"], (*path, 0))


def _with(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    body = json.loads(json.dumps(body))
    target = body
    for step in path[:-1]:
        if isinstance(target, dict):
            target = target.setdefault(step, {})
        elif isinstance(target, list) and isinstance(step, int) and step < len(target):
            target = target[step]
        else:
            return body
    if isinstance(target, dict) or (isinstance(target, list) and path[-1] < len(target)):
        target[path[-1]] = value
    return body


def _baselines(shop: Shop) -> dict[tuple[str, str], Any]:
    """Valid bodies where a generic example would not pass validation, so each hostile field is the only
    fault and the ones a schema accepts run the handler for real."""
    now = utcnow()
    campaign = "/api/console/v1/campaigns/{campaign_id}"
    return {
        ("post", "/api/shop/v1/orders"): _registered_order(shop, "SO-WALK-2"),
        ("post", "/api/console/v1/campaigns"): {
            "name": "Hostile walk",
            "starts_at": (now - timedelta(minutes=1)).isoformat(),
            "ends_at": (now + timedelta(days=30)).isoformat(),
            "rules": SEED_RULES,
        },
        ("post", f"{campaign}/rules"): {"rules": SEED_RULES},
        ("post", f"{campaign}/preview"): {"order": {"total_fen": 20_000}},
        ("post", f"{campaign}/replay"): {"days": 1},
        ("post", f"{campaign}/fund"): {
            "amount_fen": 100,
            "source": "merchant",
            "idempotency_key": "walk-fund-1",
        },
        ("post", "/api/shop/v1/orders/{out_order_no}/events"): {
            "type": "shipped",
            "occurred_at": now.isoformat(),
        },
        ("post", "/api/mp/v1/events"): {"events": [{"type": "view", "occurred_at": now.isoformat()}]},
    }


def _registered_order(shop: Shop, out_order_no: str) -> dict[str, Any]:
    return {
        "out_order_no": out_order_no,
        "consumer": {"openid": shop.openid},
        "total_fen": 20_000,
        "items": [{"sku": "TEA-1", "name": "Tea", "quantity": 2, "unit_price_fen": 10_000}],
    }


def _order(path: str, method: str) -> tuple[int, str, str]:
    # Operations that end the caller's session run last, so the others are sent signed in.
    last = {
        ("/api/console/v1/session", "post"): 1,
        ("/api/console/v1/session", "get"): 1,
        ("/api/console/v1/session/revoke-all", "post"): 2,
        ("/api/console/v1/session", "delete"): 3,
        ("/api/mp/v1/logout", "post"): 3,
    }
    return (last.get((path, method), 0), path, method)


def test_no_operation_answers_a_5xx_to_hostile_input(
    shop: Shop, owner: Console, caplog: pytest.LogCaptureFixture
) -> None:
    caller = Caller(shop, owner)
    beat(shop.client.application, list(QueueName))  # a live worker: /readyz answers 200, not 503
    spec = shop.client.get("/openapi.json").json
    order = shop.register("SO-WALK-1", 20_000)
    baselines = _baselines(shop)
    created = owner.post("/api/console/v1/campaigns", json=baselines[("post", "/api/console/v1/campaigns")])
    assert created.status_code == 201, created.json
    # Real rows where the handler should run for real; ids of rows the walk must not change (the
    # consumer, its staff and shop key, withdrawals) stay at a valid id no row has.
    real = {"campaign_id": str(created.json["id"]), "order_id": str(order["id"]), "out_order_no": "SO-WALK-1"}
    envelope = OAS30Validator(
        {"$ref": "#/components/schemas/ErrorEnvelope", "components": spec["components"]}
    )
    operations = sorted(
        (
            (path, method, op)
            for path, item in spec["paths"].items()
            for method, op in item.items()
            if method in METHODS
        ),
        key=lambda o: _order(o[0], o[1]),
    )
    failures: list[str] = []
    sent = 0
    started = time.monotonic()

    def check(method: str, url: str, what: str, response: TestResponse) -> None:
        nonlocal sent
        sent += 1
        if response.status_code >= 500:
            failures.append(f"{method.upper()} {url} [{what}] -> {response.status_code}")
        elif (
            response.status_code >= 400
            and response.mimetype == "application/json"
            and not envelope.is_valid(response.json)
        ):
            failures.append(f"{method.upper()} {url} [{what}] -> not the envelope: {response.json}")

    caplog.set_level(logging.INFO)
    for path, method, op in operations:
        item = spec["paths"][path]
        params = op.get("parameters", []) + item.get("parameters", [])
        path_params = [p for p in params if p["in"] == "path"]
        query_params = [p for p in params if p["in"] == "query"]

        def url(
            overrides: dict[str, str], path: str = path, path_params: list[dict[str, Any]] = path_params
        ) -> str:
            for p in path_params:
                default = real.get(p["name"], BIG_ID)
                path = path.replace("{" + p["name"] + "}", overrides.get(p["name"], default))
            return path

        body_schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        baseline = baselines.get((method, path)) or (_example(spec, body_schema) if body_schema else None)
        json_kwargs: dict[str, Any] = {"json": baseline} if body_schema else {}

        for p in path_params:
            for value in PATH_VALUES:
                target = url({p["name"]: value})
                check(method, target, f"path {p['name']}", caller.send(method, target, **json_kwargs))
        for p in query_params:
            for value in QUERY_VALUES:
                response = caller.send(method, url({}), query_string={p["name"]: value}, **json_kwargs)
                check(method, url({}), f"query {p['name']}={value[:20]!r}", response)
        if method in ("get", "delete") and not body_schema:
            check(method, url({}), "plain", caller.send(method, url({})))
            continue
        for raw in RAW_BODIES:
            response = caller.send(method, url({}), data=raw, content_type="application/json")
            check(method, url({}), f"raw body {raw[:20]!r}", response)
        if body_schema:
            check(method, url({}), "baseline", caller.send(method, url({}), json=baseline))
            for field in _field_paths(spec, body_schema):
                for value in FIELD_VALUES:
                    response = caller.send(method, url({}), json=_with(baseline, field, value))
                    check(method, url({}), f"{'.'.join(map(str, field))}={str(value)[:20]!r}", response)

    elapsed = time.monotonic() - started
    tracebacks = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert failures == [], "\n".join(failures[:50])
    assert tracebacks == [], [r.getMessage() for r in tracebacks[:10]]
    assert len(operations) >= 60 and sent > 2_500, (len(operations), sent)
    print(f"hostile walk: {len(operations)} operations, {sent} requests, {elapsed:.1f} s")  # noqa: T201


def test_no_field_of_a_rule_document_answers_a_5xx(
    shop: Shop, owner: Console, caplog: pytest.LogCaptureFixture
) -> None:
    """The rule document is free-form in ``/openapi.json`` (its own schema checks it): each field of the
    seed two-way rule, one at a time, gets every hostile value, through the preview (nothing is saved)."""
    baselines = _baselines(shop)
    created = owner.post("/api/console/v1/campaigns", json=baselines[("post", "/api/console/v1/campaigns")])
    assert created.status_code == 201, created.json
    preview = f"/api/console/v1/campaigns/{created.json['id']}/preview"
    [rule] = SEED_RULES["rules"]
    statuses: set[int] = set()
    caplog.set_level(logging.INFO)
    for field in [*rule, "unknown_field"]:
        for value in FIELD_VALUES:
            rules = {"rules": [rule | {field: value}]}
            response = owner.post(preview, json={"order": {"total_fen": 20_000}, "rules": rules})
            assert response.status_code < 500, (field, str(value)[:40], response.get_data(as_text=True)[:300])
            statuses.add(response.status_code)
    assert statuses == {200, 422}, statuses  # some values are valid (0 fen, a rate of 1 bp, …)
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []
