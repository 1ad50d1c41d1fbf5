"""Every endpoint declares who may call it, refuses anonymous callers, and keeps tenants apart."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy.orm import Session
from werkzeug.routing import IntegerConverter, Rule

from app.auth.guards import AUTH_ATTR, public, staff_required
from app.auth.principals import Role
from app.merchants.models import Merchant
from tests.console_client import Console
from tests.factories import make_consumer, make_merchant, make_staff

# Endpoints without a guard, each for a reason: static files, and the public API description.
UNGUARDED = {"static", "api-docs.openapi_json", "apidocs.api_page"}
KINDS = {"public", "consumer", "staff", "shop"}
IGNORED_METHODS = {"HEAD", "OPTIONS"}


def _routes(app: Flask) -> Iterator[tuple[Rule, str]]:
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - IGNORED_METHODS):
            yield rule, method


def _fake_path(app: Flask, rule: Rule, method: str) -> str:
    values: dict[str, Any] = {
        name: 1 if isinstance(converter, IntegerConverter) else "x"
        for name, converter in rule._converters.items()
    }
    return str(app.url_map.bind("localhost").build(rule.endpoint, values, method=method))


def test_every_view_carries_a_guard(app: Flask) -> None:
    unguarded = sorted(
        endpoint
        for endpoint, view in app.view_functions.items()
        if endpoint not in UNGUARDED and getattr(view, AUTH_ATTR, None) not in KINDS
    )
    assert unguarded == []
    assert set(app.view_functions) >= UNGUARDED, "the allowlist names endpoints that no longer exist"


def test_the_mark_survives_flask_smorest_wrappers() -> None:
    blp = Blueprint("probe", __name__)

    class Body(Schema):
        name = fields.String()

    @blp.route("/inner", methods=["POST"])
    @blp.arguments(Body)
    @blp.response(200, Body)
    @staff_required(Role.OWNER)
    def inner(data: dict[str, Any]) -> dict[str, Any]:
        return data

    @blp.route("/outer")
    @public
    @blp.response(200, Body)
    def outer() -> dict[str, Any]:
        return {}

    assert getattr(inner, AUTH_ATTR) == "staff"
    assert getattr(outer, AUTH_ATTR) == "public"


def test_anonymous_callers_are_refused_everywhere_but_public_endpoints(
    app: Flask, client: FlaskClient
) -> None:
    checked, wrong = [], []
    for rule, method in _routes(app):
        view = app.view_functions[rule.endpoint]
        if rule.endpoint in UNGUARDED or getattr(view, AUTH_ATTR, None) == "public":
            continue
        path = _fake_path(app, rule, method)
        response = client.open(path, method=method, json={})
        # 401/403 only: a guard sits directly under @blp.route, so no body is validated (422, naming
        # the fields) before the caller is known.
        allowed = {401, 403}
        body = response.json
        if (
            response.status_code not in allowed
            or not isinstance(body, dict)
            or set(body) != {"error"}
            or set(body["error"]) != {"code", "message", "details"}
        ):
            wrong.append((rule.endpoint, method, path, response.status_code))
        checked.append((method, path))
    assert wrong == []
    assert ("POST", "/api/console/v1/shop-keys") in checked
    assert ("GET", "/api/shop/v1/whoami") in checked


# ---------------------------------------------------------------- tenants


@dataclass
class Tenants:
    a: Merchant
    b: Merchant


@pytest.fixture
def tenants(db_session: Session) -> Tenants:
    a, b = make_merchant("alpha"), make_merchant("beta")
    make_staff("owner@alpha.test", merchant=a, role=Role.OWNER)
    make_staff("owner@beta.test", merchant=b, role=Role.OWNER)
    make_staff("root@hongli.test", is_platform_admin=True)
    make_staff("nobody@hongli.test")
    return Tenants(a, b)


MERCHANT_SCOPED_GETS = [
    "/api/console/v1/staff",
    "/api/console/v1/merchant",
    "/api/console/v1/audit",
    "/api/console/v1/shop-keys",
]


@pytest.mark.parametrize("path", MERCHANT_SCOPED_GETS)
def test_staff_of_a_cannot_act_at_b(client: FlaskClient, tenants: Tenants, path: str) -> None:
    console = Console(client).login("owner@alpha.test")
    assert console.get(path, headers={"X-Hongli-Merchant": "alpha"}).status_code == 200
    at_b = console.get(path, headers={"X-Hongli-Merchant": "beta"})
    nowhere = console.get(path, headers={"X-Hongli-Merchant": "no-such-merchant"})
    missing = console.get(path)
    assert at_b.status_code == nowhere.status_code == missing.status_code == 403
    assert at_b.json == nowhere.json  # merchants cannot be enumerated
    created = console.post(
        "/api/console/v1/shop-keys", json={"name": "x"}, headers={"X-Hongli-Merchant": "beta"}
    )
    assert created.status_code == 403


def test_staff_without_a_role_reaches_only_their_session(client: FlaskClient, tenants: Tenants) -> None:
    console = Console(client, "alpha").login("nobody@hongli.test")
    assert console.get("/api/console/v1/session").json["memberships"] == []
    assert console.get("/api/console/v1/merchant").status_code == 403


def test_platform_admin_acts_everywhere(client: FlaskClient, tenants: Tenants) -> None:
    console = Console(client).login("root@hongli.test")
    for slug in ("alpha", "beta"):
        response = console.get("/api/console/v1/merchant", headers={"X-Hongli-Merchant": slug})
        assert response.status_code == 200 and response.json["slug"] == slug


def test_objects_of_b_are_not_found_from_a(app: Flask, tenants: Tenants) -> None:
    beta = Console(app.test_client(), "beta").login("owner@beta.test")
    b_key = beta.post("/api/console/v1/shop-keys", json={"name": "b"}).json
    b_consumer = make_consumer(tenants.b)
    alpha = Console(app.test_client(), "alpha").login("owner@alpha.test")
    assert alpha.post(f"/api/console/v1/shop-keys/{b_key['id']}/rotate").status_code == 404
    assert alpha.delete(f"/api/console/v1/shop-keys/{b_key['id']}").status_code == 404
    assert (
        alpha.post(f"/api/console/v1/consumers/{b_consumer.id}/ban", json={"reason": "x"}).status_code == 404
    )
    assert alpha.post(f"/api/console/v1/consumers/{b_consumer.id}/unban").status_code == 404
    assert [k["id"] for k in alpha.get("/api/console/v1/shop-keys").json["items"]] == []
    # B's key still works: nothing above touched it.
    whoami = app.test_client().get("/api/shop/v1/whoami", headers={"Authorization": f"Bearer {b_key['key']}"})
    assert whoami.json == {"merchant": "beta", "key": b_key["display_prefix"]}


def test_a_shop_key_of_a_only_ever_sees_a(app: Flask, tenants: Tenants) -> None:
    alpha = Console(app.test_client(), "alpha").login("owner@alpha.test")
    key = alpha.post("/api/console/v1/shop-keys", json={"name": "a"}).json["key"]
    response = app.test_client().get(
        "/api/shop/v1/whoami", headers={"Authorization": f"Bearer {key}", "X-Hongli-Merchant": "beta"}
    )
    assert response.status_code == 200 and response.json["merchant"] == "alpha"
    # A shop key is no console session, and a console session is no shop key.
    assert (
        app.test_client()
        .get(
            "/api/console/v1/merchant",
            headers={"Authorization": f"Bearer {key}", "X-Hongli-Merchant": "alpha"},
        )
        .status_code
        == 401
    )
    assert alpha.get("/api/shop/v1/whoami").status_code == 401
