"""The one JSON error envelope, request ids, structured logs without secrets."""

from __future__ import annotations

import json
import logging

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from app.core.errors import Conflict, RateLimited
from app.core.fields import MoneyField
from app.core.logging import ContextFilter, JsonFormatter, redact_text
from app.settings import Settings
from tests.conftest import AppFactory


class _Body(Schema):
    name = fields.String(required=True)
    amount_fen = MoneyField(required=True)


@pytest.fixture
def probe_client(settings: Settings, app_factory: AppFactory) -> FlaskClient:
    """A fresh app with extra routes that fail in each way a real view can."""
    app = app_factory(settings)
    blp = Blueprint("probe", __name__)

    @blp.route("/probe/body", methods=["POST"])
    @blp.arguments(_Body)
    def body(data: dict[str, object]) -> dict[str, str]:
        return {"ok": "yes"}

    @blp.route("/probe/conflict")
    def conflict() -> None:
        raise Conflict("order already registered with a different body", details={"out_order_no": "A1"})

    @blp.route("/probe/limited")
    def limited() -> None:
        raise RateLimited("too many attempts", retry_after_seconds=42)

    @blp.route("/probe/boom")
    def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    app.register_blueprint(blp)
    return app.test_client()


def _envelope(response_json: object) -> dict[str, object]:
    assert isinstance(response_json, dict)
    assert set(response_json) == {"error"}
    error = response_json["error"]
    assert set(error) == {"code", "message", "details"}
    return error


def test_404_is_the_envelope(probe_client: FlaskClient) -> None:
    response = probe_client.get("/nope")
    assert response.status_code == 404
    assert _envelope(response.json)["code"] == "not_found"


def test_405_is_the_envelope_with_allow(probe_client: FlaskClient) -> None:
    response = probe_client.delete("/healthz")
    assert response.status_code == 405
    assert _envelope(response.json)["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_422_lists_field_errors(probe_client: FlaskClient) -> None:
    response = probe_client.post("/probe/body", json={"amount_fen": 12.5})
    assert response.status_code == 422
    error = _envelope(response.json)
    assert error["code"] == "validation_error"
    fields_ = error["details"]["fields"]  # type: ignore[index]
    assert set(fields_) == {"name", "amount_fen"}


def test_malformed_json_is_a_client_error(probe_client: FlaskClient) -> None:
    response = probe_client.post("/probe/body", data="{not json", content_type="application/json")
    assert 400 <= response.status_code < 500
    _envelope(response.json)


def test_domain_errors_keep_code_and_details(probe_client: FlaskClient) -> None:
    response = probe_client.get("/probe/conflict")
    assert response.status_code == 409
    assert _envelope(response.json) == {
        "code": "conflict",
        "message": "order already registered with a different body",
        "details": {"out_order_no": "A1"},
    }
    limited = probe_client.get("/probe/limited")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "42"


def test_500_hides_internals(probe_client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    response = probe_client.get("/probe/boom")
    assert response.status_code == 500
    error = _envelope(response.json)
    assert error["code"] == "internal_error"
    assert "secret" not in response.get_data(as_text=True)
    assert "RuntimeError" not in response.get_data(as_text=True)
    # ...but the log has it, tied to the request id, with the secret scrubbed.
    record = next(r for r in caplog.records if r.getMessage() == "unhandled error")
    assert record.request_id == response.headers["X-Request-ID"]


def test_request_id_is_echoed_when_sane_and_replaced_otherwise(probe_client: FlaskClient) -> None:
    echoed = probe_client.get("/healthz", headers={"X-Request-ID": "shop-req-12345"})
    assert echoed.headers["X-Request-ID"] == "shop-req-12345"
    replaced = probe_client.get("/healthz", headers={"X-Request-ID": "<script>alert(1)</script>"})
    assert replaced.headers["X-Request-ID"] != "<script>alert(1)</script>"
    assert len(replaced.headers["X-Request-ID"]) == 32
    assert probe_client.get("/nope").headers["X-Request-ID"]


def test_every_log_line_has_the_request_id(
    probe_client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    response = probe_client.get("/healthz")
    access = [r for r in caplog.records if r.name == "hongli.http" and r.getMessage() == "request"]
    assert access and access[-1].request_id == response.headers["X-Request-ID"]
    assert access[-1].status == 200


PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"


def _format(record: logging.LogRecord) -> str:
    ContextFilter().filter(record)
    return JsonFormatter("%(message)s %(request_id)s").format(record)


def test_json_log_lines_scrub_secrets() -> None:
    record = logging.LogRecord(
        "hongli.test",
        logging.INFO,
        __file__,
        1,
        "merchant key %s api_key=abc123 secret: s3cr3t",
        (PEM,),
        None,
    )
    record.apiv3_key = "0123456789abcdef0123456789abcdef"
    record.note = "session_key=tiihtNczf5v6AKRyjwEUhQ=="
    line = _format(record)
    payload = json.loads(line)
    for leaked in ("MIIEvQ", "abc123", "s3cr3t", "0123456789abcdef", "tiihtNczf5v6AKRyjwEUhQ"):
        assert leaked not in line
    assert payload["apiv3_key"] == "[redacted]"


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ('{"appid": "wx123", "secret": "abc"}', '"appid": "wx123"'),
        ("paySign=XYZ&timeStamp=1", "timeStamp=1"),
        ("Authorization: WECHATPAY2-SHA256-RSA2048 mchid=1", ""),
    ],
)
def test_redaction_keeps_the_harmless_part(text: str, kept: str) -> None:
    redacted = redact_text(text)
    assert kept in redacted
    assert "abc" not in redacted and "XYZ" not in redacted and "WECHATPAY2" not in redacted


def test_app_factory_has_no_import_side_effects() -> None:
    """Importing the packages reads no environment and opens no connection: only create_app does."""
    import subprocess
    import sys

    code = (
        "import os, socket\n"
        "os.environ.clear()\n"
        "socket.socket.connect = lambda *a: (_ for _ in ()).throw(AssertionError('connected'))\n"
        "import app, app.extensions, app.queue, app.health.views, jobs.maintenance, wsgi\n"
        "print('clean')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)  # noqa: S603
    assert result.stdout.strip() == "clean", result.stderr


def test_flask_app_is_built_fresh_each_time(settings: Settings, app_factory: AppFactory) -> None:
    first: Flask = app_factory(settings)
    second: Flask = app_factory(settings)
    assert first is not second
    assert first.extensions["hongli.settings"] is settings
