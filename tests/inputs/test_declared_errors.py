"""``/openapi.json`` tells the truth about errors: every error body the API really sends (404, 405, 409,
422, 401, 403, 413) is valid against the schema the document declares for error responses."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from openapi_schema_validator import OAS30Validator
from werkzeug.test import TestResponse

from tests.console_client import Console
from tests.payments.conftest import Shop

ERROR_REF = "#/components/schemas/ErrorEnvelope"


@pytest.fixture
def spec(client: FlaskClient) -> dict[str, Any]:
    return client.get("/openapi.json").json  # type: ignore[no-any-return]


def _declared_error_validator(spec: dict[str, Any]) -> OAS30Validator:
    return OAS30Validator({"$ref": ERROR_REF, "components": spec["components"]})


def test_every_declared_error_response_is_the_envelope(spec: dict[str, Any]) -> None:
    responses = spec["components"]["responses"]
    declared = [
        (path, method, status, answer)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
        for status, answer in op["responses"].items()
        if status == "default" or int(status) >= 400
        if (path, status) != ("/readyz", "503")  # readiness answers its checks, on purpose
    ]
    assert declared
    for path, method, status, answer in declared:
        if "$ref" in answer:
            answer = responses[answer["$ref"].rsplit("/", 1)[1]]
        schema = answer["content"]["application/json"]["schema"]
        assert schema == {"$ref": ERROR_REF}, (path, method, status, schema)
    # flask-smorest's own shape ({code: int, status, message, errors}) is gone from the document.
    assert "Error" in spec["components"]["schemas"]
    assert set(spec["components"]["schemas"]["Error"]["properties"]) == {"code", "message", "details"}


def _real_errors(shop: Shop, owner: Console, viewer: Console, client: FlaskClient) -> dict[str, TestResponse]:
    registered = {
        "out_order_no": "SO-ERR",
        "consumer": {"openid": shop.openid},
        "total_fen": 100,
        "items": [{"sku": "T", "name": "Tea", "quantity": 1, "unit_price_fen": 100}],
    }
    assert (
        shop.client.post("/api/shop/v1/orders", json=registered, headers=shop.shop_headers).status_code == 201
    )
    changed = registered | {"total_fen": 200, "items": [registered["items"][0] | {"unit_price_fen": 200}]}
    return {
        "404 unknown path": client.get("/api/mp/v1/no-such-thing"),
        "404 unknown id": shop.client.get(
            "/api/mp/v1/orders/9223372036854775807", headers=shop.consumer_headers
        ),
        "405 wrong method": client.put("/api/mp/v1/login", json={}),
        "409 conflict": shop.client.post("/api/shop/v1/orders", json=changed, headers=shop.shop_headers),
        "422 schema": client.post("/api/mp/v1/login", json={"appid": 1}),
        "422 deep JSON": client.post("/api/mp/v1/login", data=b"[" * 5000, content_type="application/json"),
        "422 query": owner.get("/api/console/v1/audit", query_string={"limit": "²"}),
        "401 no credentials": client.get("/api/mp/v1/me"),
        "401 bad shop key": client.get("/api/shop/v1/whoami", headers={"Authorization": "Bearer hk_nope"}),
        "403 no CSRF": owner.client.post("/api/console/v1/shop-keys", json={"name": "x"}),
        "403 role": viewer.post("/api/console/v1/shop-keys", json={"name": "x"}),
        "400 bad JSON": client.post("/api/mp/v1/login", data=b"{", content_type="application/json"),
        "413 too large": client.post(
            "/api/mp/v1/login", data=b'"' + b"x" * 1_100_000 + b'"', content_type="application/json"
        ),
    }


def test_real_error_bodies_match_the_declared_schema(
    shop: Shop, owner: Console, app: Any, client: FlaskClient, spec: dict[str, Any]
) -> None:
    from app.auth.principals import Role
    from tests.factories import make_staff

    viewer_staff = make_staff(merchant=shop.merchant, role=Role.VIEWER)
    viewer = Console(app.test_client(), shop.merchant.slug).login(viewer_staff.email)
    validator = _declared_error_validator(spec)
    for case, response in _real_errors(shop, owner, viewer, client).items():
        expected = int(case.split()[0])
        assert response.status_code == expected, (case, response.status_code, response.get_data(as_text=True))
        assert response.mimetype == "application/json", case
        problems = [error.message for error in validator.iter_errors(response.json)]
        assert problems == [], (case, response.json, problems)


def test_flask_smorests_error_shape_is_refused_by_the_declared_schema(spec: dict[str, Any]) -> None:
    # The check above has teeth: the body flask-smorest would have sent does not validate.
    smorest = {"code": 422, "status": "Unprocessable Entity", "message": "x", "errors": {}}
    assert not _declared_error_validator(spec).is_valid(smorest)
