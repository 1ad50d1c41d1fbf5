"""The WeChat sandbox, in process, for app tests: Hongli's configured WeChat URLs are routed to it
through ``responses`` (no sockets), and the sandbox's notification pushes go to the Hongli app."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import responses
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient

from app.audit.service import CLI
from app.merchants.demo import seed_demo_merchant
from app.merchants.models import Merchant
from app.settings import Settings
from wechat.sandbox import Clock, SandboxConfig, World, create_sandbox, world_of
from wechat.sandbox import crypto as sb_crypto
from wechat.sandbox.testing import route_to_wsgi


def make_key_pool(size: int = 6) -> list[rsa.RSAPrivateKey]:
    return [sb_crypto.generate_rsa_key() for _ in range(size)]


@dataclass
class Sandbox:
    """An in-process sandbox plus its admin client."""

    app: Flask
    world: World
    admin: FlaskClient
    mock: responses.RequestsMock

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.admin.post(f"/_sandbox{path}", json=body or {})
        assert response.status_code < 300, (path, response.status_code, response.get_json())
        return response.get_json()

    def get(self, path: str) -> Any:
        response = self.admin.get(f"/_sandbox{path}")
        assert response.status_code < 300, (path, response.status_code, response.get_json())
        return response.get_json()

    def user(self, **fields: Any) -> dict[str, Any]:
        return self.post("/users", fields)  # type: ignore[no-any-return]

    def login_code(self, user_id: str, appid: str) -> str:
        return str(self.post(f"/users/{user_id}/login-code", {"appid": appid})["code"])

    def onboard(self, slug: str) -> Merchant:
        """A merchant registered in the sandbox (pay + mini-program + official account) and in Hongli."""
        return seed_demo_merchant(slug=slug, name=f"Merchant {slug}", actor=CLI).merchant


def open_sandbox(
    settings: Settings, hongli: Flask, keys: list[rsa.RSAPrivateKey], seed: int = 7
) -> Iterator[Sandbox]:
    pool = itertools.cycle(keys)
    app = create_sandbox(SandboxConfig(seed=seed), clock=Clock(), key_factory=lambda: next(pool))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        bases = {settings.wechat.api_base_url, settings.wechat.pay_base_url, settings.wechat.open_base_url}
        for base in bases:
            route_to_wsgi(mock, base, app)
        route_to_wsgi(mock, settings.web.public_base_url, hongli)
        yield Sandbox(app, world_of(app), app.test_client(), mock)
