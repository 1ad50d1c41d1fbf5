"""Sandbox WSGI factory: one Flask app serving WeChat's real paths plus ``/_sandbox/`` admin.

A separate application on purpose: it must never be mounted inside Hongli's app.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from wechat.sandbox import (
    routes_actions,
    routes_admin,
    routes_card,
    routes_coupons,
    routes_login,
    routes_marketing,
    routes_oa,
    routes_pay_v2,
    routes_pay_v3,
    routes_transfer,
)
from wechat.sandbox.clock import Clock
from wechat.sandbox.notify import Transport
from wechat.sandbox.world import EXTENSION_KEY, SandboxConfig, World


def create_sandbox(
    config: SandboxConfig | None = None,
    *,
    clock: Clock | None = None,
    transport: Transport | None = None,
    key_factory: Callable[[], rsa.RSAPrivateKey] | None = None,
) -> Flask:
    """Build a sandbox app. ``clock`` defaults to a running real-time clock; ``transport`` posts
    notifications (default ``requests``); ``key_factory`` mints RSA keys (inject a pool to speed up tests).
    The world is at ``app.extensions["wechat_sandbox"]`` (see :func:`world_of`)."""
    config = config or SandboxConfig()
    app = Flask("wechat_sandbox")
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    world = World(config, clock or Clock(), transport, key_factory)
    app.extensions[EXTENSION_KEY] = world
    for module in (
        routes_pay_v3,
        routes_transfer,
        routes_marketing,
        routes_coupons,
        routes_pay_v2,
        routes_login,
        routes_card,
        routes_oa,
        routes_admin,
        routes_actions,
    ):
        app.register_blueprint(module.bp)
    app.register_blueprint(routes_coupons.admin)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> tuple[Response, int]:
        code = err.code or 500
        return jsonify(
            {"error": {"code": err.name.lower().replace(" ", "_"), "message": err.description, "details": {}}}
        ), code

    return app


def world_of(app: Flask) -> World:
    """The ``World`` behind a sandbox app (state, clock, faults, notifier)."""
    world = app.extensions[EXTENSION_KEY]
    assert isinstance(world, World)
    return world
