"""Who is asking, as far as a request can tell: the client IP and the device id, both as keyed digests.

The IP is ``request.remote_addr``: with ``web.trusted_proxy_count`` = n, werkzeug's ProxyFix takes the
n-th address from the right of ``X-Forwarded-For`` (the one our own proxy wrote) and ignores whatever the
client put to the left of it, so a spoofed header changes nothing. With n = 0 the header is ignored.

The device id comes in ``X-Hongli-Device``. It is a token the server issued (``POST /api/mp/v1/risk/device``:
a random id and its HMAC under the server secret), so a client cannot make up fresh device ids for
every account: an id that does not verify counts as no device at all (and is itself a signal).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from functools import cached_property

from flask import current_app, has_request_context, request

DEVICE_HEADER = "X-Hongli-Device"
_DIGEST_KEY = "hongli.risk_digest_key"
_DEVICE = re.compile(r"^d1\.([A-Za-z0-9_-]{22})\.([0-9a-f]{16})$")


def _secret() -> bytes:
    """The digests' key, derived from the server secret once per app."""
    key: bytes | None = current_app.extensions.get(_DIGEST_KEY)
    if key is None:
        settings = current_app.extensions["hongli.settings"]
        secret = settings.web.secret_key.get_secret_value().encode()
        key = current_app.extensions[_DIGEST_KEY] = hashlib.sha256(b"hongli-risk:" + secret).digest()
    return key


def digest(kind: str, value: str) -> str:
    """A keyed digest of an identifier (HMAC-SHA256 under the server secret, 32 hex characters)."""
    return hmac.new(_secret(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def issue_device_token() -> str:
    """A new device token for the mini-program to keep and send in ``X-Hongli-Device``."""
    device_id = secrets.token_urlsafe(16)
    return f"d1.{device_id}.{_sign(device_id)}"


def _sign(device_id: str) -> str:
    return hmac.new(_secret(), f"device-token:{device_id}".encode(), hashlib.sha256).hexdigest()[:16]


def verified_device(token: str | None) -> str | None:
    """The device id of a token the server issued; None for a missing, malformed or forged one."""
    if not token:
        return None
    match = _DEVICE.match(token.strip())
    if match is None or not hmac.compare_digest(match.group(2), _sign(match.group(1))):
        return None
    return match.group(1)


@dataclass(frozen=True)
class Client:
    """The client of a request: its IP (as seen through the trusted proxies) and device, if any."""

    ip: str | None = None
    device: str | None = None  # the verified device id (digested before it is stored)
    device_sent: bool = False  # a device header was sent (True with device None: it was forged)
    device_hash: str | None = None  # an already digested device (a replayed decision)

    @cached_property
    def ip_digest(self) -> str | None:
        return None if self.ip is None else digest("ip", self.ip)

    @cached_property
    def device_digest(self) -> str | None:
        if self.device_hash is not None:
            return self.device_hash
        return None if self.device is None else digest("device", self.device)


def current_client() -> Client:
    """The client of the current request (an empty one outside a request: jobs, callbacks)."""
    if not has_request_context():
        return Client()
    sent = request.headers.get(DEVICE_HEADER)
    return Client(ip=request.remote_addr or None, device=verified_device(sent), device_sent=bool(sent))
