"""Fixtures for sandbox tests: an in-process sandbox behind ``responses``, a merchant inbox, key pool."""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import responses
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient

from wechat.sandbox import Clock, SandboxConfig, World, create_sandbox, world_of
from wechat.sandbox import crypto as sb_crypto
from wechat.sandbox.testing import route_to_sandbox

MCH_HOST = "https://api.mch.weixin.qq.com"
API_HOST = "https://api.weixin.qq.com"
NOTIFY_URL = "https://merchant.example.test/wechat/notify"
OA_URL = "https://merchant.example.test/wechat/oa"
START = 1_795_500_000.0  # fixed business start time (2026-11-24, Beijing afternoon)


@pytest.fixture(scope="session")
def key_pool() -> list[rsa.RSAPrivateKey]:
    """RSA keys are slow to make; generate a few per test session and reuse them."""
    return [sb_crypto.generate_rsa_key() for _ in range(6)]


@dataclass
class Inbox:
    """What the fake merchant server received, and how it answers."""

    status: int = 200
    answers: list[int] = field(default_factory=list)  # consumed first, then ``status``
    received: list[dict[str, Any]] = field(default_factory=list)

    def callback(self, req: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        body = req.body if isinstance(req.body, bytes) else (req.body or "").encode()
        self.received.append({"url": req.url, "headers": dict(req.headers), "body": body})
        status = self.answers.pop(0) if self.answers else self.status
        return status, {}, b"" if status in (200, 204) else '{"code":"FAIL","message":"失败"}'.encode()


@dataclass
class Env:
    app: Flask
    world: World
    mock: responses.RequestsMock
    admin: FlaskClient
    inbox: Inbox
    oa_inbox: Inbox

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        resp = self.admin.post(f"/_sandbox{path}", json=body or {})
        assert resp.status_code < 300, (path, resp.status_code, resp.get_json())
        return resp.get_json()

    def merchant(self, **kw: Any) -> dict[str, Any]:
        kw.setdefault("notify_url", NOTIFY_URL)
        return self.post("/merchants", kw)

    def mini_program(self, mchid: str, **kw: Any) -> dict[str, Any]:
        return self.post("/apps", {"kind": "miniprogram", "mchids": [mchid], **kw})

    def official(self, mchid: str | None = None, **kw: Any) -> dict[str, Any]:
        kw.setdefault("server_url", OA_URL)
        return self.post("/apps", {"kind": "official", "mchids": [mchid] if mchid else [], **kw})

    def user(self, **kw: Any) -> dict[str, Any]:
        return self.post("/users", kw)

    def advance(self, seconds: float) -> Any:
        return self.post("/clock/advance", {"seconds": seconds})

    def notifications(self, **params: str) -> list[dict[str, Any]]:
        resp = self.admin.get("/_sandbox/notifications", query_string=params)
        return list(resp.get_json()["notifications"])


def make_env(key_pool: list[rsa.RSAPrivateKey], **config: Any) -> Iterator[Env]:
    keys = itertools.cycle(key_pool)
    config.setdefault("seed", 7)
    app = create_sandbox(
        SandboxConfig(**config), clock=Clock(START, frozen=True), key_factory=lambda: next(keys)
    )
    inbox, oa_inbox = Inbox(), Inbox()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        route_to_sandbox(mock, app)
        mock.add_callback(responses.POST, NOTIFY_URL, callback=inbox.callback, content_type=None)
        mock.add_callback(
            responses.POST, re.compile(OA_URL + r"\?.*"), callback=oa_inbox.callback, content_type=None
        )
        yield Env(app, world_of(app), mock, app.test_client(), inbox, oa_inbox)


@pytest.fixture
def env(key_pool: list[rsa.RSAPrivateKey]) -> Iterator[Env]:
    yield from make_env(key_pool)


def v3_call(
    env_or_none: Env | None,
    merchant: dict[str, Any],
    method: str,
    path: str,
    body: Any = None,
    *,
    timestamp: int | None = None,
    serial: str | None = None,
    key_pem: str | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """A hand-signed v3 request (independent of any SDK) through ``requests``."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    raw = b"" if body is None else json.dumps(body).encode()
    key = load_pem_private_key((key_pem or merchant["merchant_private_key_pem"]).encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    auth = sb_crypto.build_authorization(
        key,
        mchid=merchant["mchid"],
        serial_no=serial or merchant["merchant_serial"],
        method=method,
        canonical_url=path,
        body=raw,
        timestamp=int(time.time()) if timestamp is None else timestamp,
        nonce="N" + str(time.monotonic_ns()),
    )
    hdrs = {
        "Authorization": auth,
        "Accept": "application/json",
        "Content-Type": "application/json",
        "User-Agent": "hongli-sandbox-tests",
    }
    hdrs.update(headers or {})
    return requests.request(method, MCH_HOST + path, data=raw or None, headers=hdrs, timeout=5)


def verify_v3_response(merchant: dict[str, Any], resp: requests.Response) -> bool:
    """Check Wechatpay-* headers against the platform cert or the public key the sandbox returned."""
    serial = resp.headers["Wechatpay-Serial"]
    pem = (
        merchant["public_key_pem"]
        if serial.startswith("PUB_KEY_ID_")
        else merchant["platform_certificate_pem"]
    )
    message = sb_crypto.response_message(
        resp.headers["Wechatpay-Timestamp"], resp.headers["Wechatpay-Nonce"], resp.content
    )
    return sb_crypto.rsa_verify(sb_crypto.load_public_key(pem), message, resp.headers["Wechatpay-Signature"])
