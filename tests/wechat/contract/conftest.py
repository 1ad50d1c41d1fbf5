"""Contract fixtures: Hongli's real WeChat clients against the in-process sandbox (no sockets).

WeChat's hosts are routed to the sandbox with ``responses``; Pay v3 notifications land in an inbox
(a ``responses`` callback on ``NOTIFY_URL``); official-account pushes reach a tiny merchant WSGI app that
verifies and decrypts them with ``wechat.oa_messages``. Assertions read the sandbox's admin views.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import responses
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, request
from flask.testing import FlaskClient
from werkzeug.wrappers import Response

from wechat.endpoints import WeChatEndpoints
from wechat.errors import VerificationError
from wechat.oa_messages import MessageCrypto, OAEvent, check_server_signature, parse_event
from wechat.pay_v2 import MerchantV2Credentials, PayV2Client
from wechat.pay_v3 import MerchantV3Credentials, PayV3Client
from wechat.sandbox import Clock, SandboxConfig, World, create_sandbox, world_of
from wechat.sandbox import crypto as sb_crypto
from wechat.sandbox.testing import route_to_sandbox, route_to_wsgi
from wechat.verify import PlatformKeys

START = 1_795_500_000.0  # business time: 2026-11-24, Beijing afternoon (wall time stays real)
NOTIFY_URL = "https://merchant.example.test/wechat/pay/notify"
OA_BASE = "https://oa.example.test"
MITM_BASE = "https://mitm.example.test"  # a Pay host that tampers with the sandbox's answers
ENDPOINTS = WeChatEndpoints(timeout_seconds=5)  # WeChat's real hosts, routed to the sandbox


@pytest.fixture(scope="session")
def key_pool() -> list[rsa.RSAPrivateKey]:
    """RSA keys are slow to make; a few per session, handed out round-robin (as the sandbox tests do)."""
    return [sb_crypto.generate_rsa_key() for _ in range(6)]


@dataclass
class PayInbox:
    """The merchant's Pay notify endpoint: keeps the exact bytes and headers WeChat posted."""

    status: int = 200
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def callback(self, req: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        body = req.body if isinstance(req.body, bytes) else (req.body or "").encode()
        self.received.append((dict(req.headers), body))
        return self.status, {}, b""


@dataclass
class OAServer:
    """Hongli's official-account server URL: checks signatures, decrypts safe mode, parses events."""

    accounts: dict[str, tuple[str, MessageCrypto]] = field(default_factory=dict)
    events: list[OAEvent] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def register(self, app: dict[str, Any], *, token: str | None = None) -> None:
        tok = token or app["token"]
        self.accounts[app["appid"]] = (tok, MessageCrypto(tok, app["encoding_aes_key"], app["appid"]))

    def wsgi(self) -> Flask:
        server = Flask("oa-server")

        @server.post("/wechat/oa/<appid>")
        def receive(appid: str) -> Response:
            token, message_crypto = self.accounts[appid]
            args = request.args
            try:
                if not check_server_signature(token, args["signature"], args["timestamp"], args["nonce"]):
                    raise VerificationError("signature", code="SIGNATURE_INVALID", ambiguous=False)
                body = request.get_data()
                if args.get("encrypt_type") == "aes":
                    body = message_crypto.decrypt_message(
                        body, args["msg_signature"], args["timestamp"], args["nonce"]
                    )
                self.events.append(parse_event(body))
            except VerificationError as exc:
                self.rejected.append(str(exc.code))
                return Response("forbidden", status=403)
            return Response("success", status=200)

        return server


@dataclass
class Sandbox:
    """One in-process sandbox plus the merchant-side endpoints it talks to."""

    app: Flask
    world: World
    mock: responses.RequestsMock
    admin: FlaskClient
    inbox: PayInbox
    oa: OAServer

    # -- admin API -------------------------------------------------------------------------------

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        resp = self.admin.post(f"/_sandbox{path}", json=body or {})
        assert resp.status_code < 300, (path, resp.status_code, resp.get_json())
        return resp.get_json()

    def get(self, path: str, **params: str) -> Any:
        resp = self.admin.get(f"/_sandbox{path}", query_string=params)
        assert resp.status_code == 200, (path, resp.status_code, resp.get_json())
        return resp.get_json()

    def state(self, table: str) -> list[dict[str, Any]]:
        return list(self.get(f"/state/{table}")[table])

    def row(self, table: str, **match: Any) -> dict[str, Any]:
        rows = [r for r in self.state(table) if all(r.get(k) == v for k, v in match.items())]
        assert len(rows) == 1, (table, match, rows)
        return rows[0]

    def payouts(self, mchid: str) -> list[dict[str, Any]]:
        return list(self.get("/payouts", mchid=mchid)["payouts"])

    def notifications(self, **params: str) -> list[dict[str, Any]]:
        return list(self.get("/notifications", **params)["notifications"])

    def fault(self, api: str, mode: str, **kw: Any) -> None:
        self.post("/faults", {"api": api, "mode": mode, **kw})

    def advance(self, seconds: float) -> None:
        self.post("/clock/advance", {"seconds": seconds})

    def balance(self, mchid: str) -> int:
        return int(self.get(f"/merchants/{mchid}")["balance_fen"])

    # -- registration ----------------------------------------------------------------------------

    def merchant(self, **kw: Any) -> dict[str, Any]:
        kw.setdefault("notify_url", NOTIFY_URL)
        kw.setdefault("balance_fen", 100_000)
        return dict(self.post("/merchants", kw))

    def mini_program(self, mchid: str | None = None, **kw: Any) -> dict[str, Any]:
        return dict(self.post("/apps", {"kind": "miniprogram", "mchids": [mchid] if mchid else [], **kw}))

    def official(self, mchid: str | None = None, **kw: Any) -> dict[str, Any]:
        """An official account whose server URL is our OA server (safe mode unless told otherwise)."""
        appid = kw.pop("appid", None) or f"wxoa{len(self.world.state.apps):014d}"
        kw.setdefault("safe_mode", True)
        app = dict(
            self.post(
                "/apps",
                {
                    "kind": "official",
                    "appid": appid,
                    "server_url": f"{OA_BASE}/wechat/oa/{appid}",
                    "mchids": [mchid] if mchid else [],
                    **kw,
                },
            )
        )
        self.oa.register(app)
        return app

    def user(self, **kw: Any) -> dict[str, Any]:
        return dict(self.post("/users", kw))


def tampering(app: Any, mutate: Callable[[Response], None]) -> Callable[..., Any]:
    """WSGI middleware: run ``app`` and let ``mutate`` change its buffered answer (a man in the middle)."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        resp = Response.from_app(app, environ, buffered=True)
        mutate(resp)
        return resp(environ, start_response)

    return wsgi


def flip_byte(resp: Response) -> None:
    """Flip one bit in the middle of the body; headers (and the signature) stay as WeChat sent them."""
    data = bytearray(resp.get_data())
    if data:
        data[len(data) // 2] ^= 0x01
        resp.set_data(bytes(data))


@pytest.fixture
def sandbox(key_pool: list[rsa.RSAPrivateKey]) -> Iterator[Sandbox]:
    keys = itertools.cycle(key_pool)
    app = create_sandbox(
        SandboxConfig(seed=11), clock=Clock(START, frozen=True), key_factory=lambda: next(keys)
    )
    inbox, oa = PayInbox(), OAServer()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        route_to_sandbox(mock, app)
        route_to_wsgi(mock, OA_BASE, oa.wsgi())
        route_to_wsgi(mock, MITM_BASE, tampering(app, flip_byte))
        mock.add_callback(responses.POST, NOTIFY_URL, callback=inbox.callback, content_type=None)
        yield Sandbox(app, world_of(app), mock, app.test_client(), inbox, oa)


# -- Pay clients -------------------------------------------------------------------------------------


def v3_credentials(merchant: dict[str, Any]) -> MerchantV3Credentials:
    return MerchantV3Credentials(
        mchid=merchant["mchid"],
        serial_no=merchant["merchant_serial"],
        private_key_pem=merchant["merchant_private_key_pem"],
        apiv3_key=merchant["apiv3_key"],
    )


def platform_keys(merchant: dict[str, Any], sign_mode: str) -> PlatformKeys:
    """What Hongli configures: the WeChat Pay public key, or the platform certificate from the portal."""
    keys = PlatformKeys()
    if sign_mode == "public_key":
        keys.add_public_key(merchant["public_key_id"], merchant["public_key_pem"])
    else:
        keys.add_certificate(merchant["platform_certificate_pem"])
    return keys


def v3_client(
    merchant: dict[str, Any], sign_mode: str, endpoints: WeChatEndpoints = ENDPOINTS
) -> PayV3Client:
    return PayV3Client(v3_credentials(merchant), platform_keys(merchant, sign_mode), endpoints)


def v2_client(merchant: dict[str, Any], *, api_key: str | None = None) -> PayV2Client:
    """v2 client with the mTLS identity the sandbox issued at merchant registration."""
    return PayV2Client(
        MerchantV2Credentials(
            mch_id=merchant["mchid"],
            api_key=api_key or merchant["v2_key"],
            cert_pem=merchant["merchant_certificate_pem"],
            key_pem=merchant["merchant_private_key_pem"],
        ),
        ENDPOINTS,
    )


INFOS = [{"info_type": "活动名称", "info_content": "返利"}, {"info_type": "奖励说明", "info_content": "满减"}]


def send_red_packet(
    client: PayV2Client, appid: str, openid: str, billno: str, amount: int = 500
) -> dict[str, Any]:
    """One cash red packet with fixed texts; ``billno`` is the caller's saved ``mch_billno``."""
    return client.send_red_packet(
        mch_billno=billno,
        wxappid=appid,
        re_openid=openid,
        total_amount=amount,
        send_name="洪利小店",
        wishing="恭喜发财",
        act_name="返利活动",
        remark="感谢支持",
        client_ip="10.0.0.1",
    )


@dataclass
class PayWorld:
    """A merchant in one sign mode, a mini-program bound to it and a user of that app."""

    sandbox: Sandbox
    sign_mode: str
    merchant: dict[str, Any]
    app: dict[str, Any]
    user: dict[str, Any]
    client: PayV3Client

    @property
    def mchid(self) -> str:
        return str(self.merchant["mchid"])

    @property
    def appid(self) -> str:
        return str(self.app["appid"])

    @property
    def openid(self) -> str:
        return str(self.user["openids"][self.app["appid"]])

    @property
    def expected_serial(self) -> str:
        """The key WeChat signs with in this mode (requests name a public key id in public-key mode)."""
        if self.sign_mode == "public_key":
            return str(self.merchant["public_key_id"])
        return str(self.merchant["platform_serial"]).upper()


@pytest.fixture(params=["platform", "public_key"])
def pay(request: pytest.FixtureRequest, sandbox: Sandbox) -> PayWorld:
    sign_mode = str(request.param)
    merchant = sandbox.merchant(sign_mode=sign_mode)
    app = sandbox.mini_program(merchant["mchid"])
    user = sandbox.user(nickname="付款人")
    return PayWorld(sandbox, sign_mode, merchant, app, user, v3_client(merchant, sign_mode))
