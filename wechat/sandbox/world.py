"""The sandbox world: state, clock, scheduler, RNG, faults and notifier behind one lock."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa
from flask import current_app

from wechat.sandbox import crypto
from wechat.sandbox.clock import Clock, Scheduler
from wechat.sandbox.faults import FaultBook
from wechat.sandbox.notify import Notifier, Transport
from wechat.sandbox.state import Merchant, Rng, State
from wechat.sandbox.tls import SandboxCA

EXTENSION_KEY = "wechat_sandbox"


@dataclass
class SandboxConfig:
    """Tunables; defaults follow the protocol doc, UNVERIFIED items are configurable (§10)."""

    seed: int | None = None
    time_scale: float = 1.0  # divides scheduled delays (retries, expiries, refund processing)
    request_window_s: int = 300  # ±300 s request timestamp window (§3.2, UNVERIFIED server side)
    redpack_expiry_s: int = 24 * 3600  # unopened cash red packets are refunded after 24 h (§5.5)
    redpack_daily_per_user: int = 10  # packets a user may receive from one merchant per day (§5.1)
    transfer_confirm_expiry_s: int = 24 * 3600
    refund_delay_s: float = 5.0  # PROCESSING -> SUCCESS unless resolved by the admin API first
    login_code_ttl_s: int = 300
    oauth_code_ttl_s: int = 300
    token_ttl_s: int = 7200
    token_overlap_s: int = 300  # old cgi-bin/token stays valid 5 min after a new one (§1.3)
    prepay_ttl_s: int = 7200
    notify_timeout_s: float = 5.0
    real_sleep: bool = False  # server mode: "timeout" faults really sleep
    require_client_cert: bool = False  # server --tls: v2 money APIs need the merchant certificate (§4.1)


class World:
    """Everything one sandbox instance knows. Mutate state only under ``lock``."""

    def __init__(
        self,
        config: SandboxConfig,
        clock: Clock,
        transport: Transport | None = None,
        key_factory: Callable[[], rsa.RSAPrivateKey] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.scheduler = Scheduler(clock)
        self.rng = Rng(config.seed)
        self.state = State()
        self.faults = FaultBook()
        self.lock = threading.RLock()
        self.key_factory = key_factory or crypto.generate_rsa_key
        self.notifier = Notifier(self, transport)
        self._ca: SandboxCA | None = None
        self._ca_lock = threading.Lock()

    def restore_ca(self, ca: SandboxCA) -> None:
        """Reinstall a saved CA (``--state-file``) so issued merchant certificates stay valid."""
        with self._ca_lock:
            self._ca = ca

    def ca(self) -> SandboxCA:
        """The sandbox CA (created on first use) that issues merchant API and server certificates."""
        with self._ca_lock:
            if self._ca is None:
                self._ca = SandboxCA.create(
                    self.key_factory(), dt.datetime.fromtimestamp(self.clock.wall(), dt.UTC)
                )
            return self._ca

    def after(self, delay_s: float, action: Callable[[], None], label: str = "") -> float:
        """Schedule ``action`` ``delay_s`` business seconds from now, compressed by the time scale."""
        due = self.clock.now() + delay_s / self.config.time_scale
        self.scheduler.at(due, action, label)
        return due

    def v3_signature_headers(
        self, merchant: Merchant, body: bytes, *, serial_hint: str = "", for_notification: bool = False
    ) -> dict[str, str]:
        """Wechatpay-* headers for a body. Key per §3.3: the request's serial, else the merchant mode."""
        use_pubkey = merchant.sign_mode == "public_key" or serial_hint.startswith("PUB_KEY_ID_")
        if for_notification and merchant.sign_mode == "mixed":
            use_pubkey = self.rng.random() < 0.5
        if not merchant.platform_certificates:
            use_pubkey = True
        key, serial = (
            (merchant.pubkey_key, merchant.pubkey_id)
            if use_pubkey
            else (merchant.platform_key, merchant.platform_serial)
        )
        ts = str(int(self.clock.wall()))
        nonce = self.rng.alnum(32)
        headers = {
            "Wechatpay-Timestamp": ts,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": crypto.sign_response(key, ts, nonce, body),
            "Wechatpay-Serial": serial,
            "Wechatpay-Signature-Type": crypto.SIGNATURE_TYPE,
        }
        if not for_notification:
            headers["Request-ID"] = f"08{self.rng.hex(30)}"
        return headers

    def run_due(self) -> int:
        """Fire every timer and delivery now due (call without holding ``lock``)."""
        return self.scheduler.run_due()

    def advance(self, seconds: float) -> int:
        """Advance business time, firing timers in due order; returns how many fired."""
        return self.scheduler.advance(seconds)


def current_world() -> World:
    """The ``World`` of the sandbox app serving the current request."""
    world = current_app.extensions[EXTENSION_KEY]
    assert isinstance(world, World)
    return world
