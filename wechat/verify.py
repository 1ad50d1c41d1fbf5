"""Verification of WeChat Pay v3 responses and notifications (protocol doc §3.3).

:class:`PlatformKeys` holds every key WeChat may sign with at once — several platform certificates
during a rotation, and WeChat Pay public keys (``PUB_KEY_ID_…``) — keyed by ``Wechatpay-Serial``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from wechat.crypto import AUTH_SCHEMA, load_public_key, rsa_sha256_verify, v3_response_message
from wechat.errors import VerificationError

__all__ = [
    "PUBLIC_KEY_ID_PREFIX",
    "SIGNTEST_PREFIX",
    "PlatformKey",
    "PlatformKeys",
    "RefreshCallback",
    "certificate_key",
    "header_lookup",
]

PUBLIC_KEY_ID_PREFIX = "PUB_KEY_ID_"
SIGNTEST_PREFIX = "WECHATPAY/SIGNTEST/"
# §3.3 rule 1: reject when |now - Wechatpay-Timestamp| >= 5 minutes (wechatpay-go FiveMinute).
DEFAULT_MAX_SKEW_SECONDS = 300


@dataclass(frozen=True, slots=True)
class PlatformKey:
    """A verification key; validity bounds are Unix seconds (None = no bound, as for public keys)."""

    serial: str
    public_key: rsa.RSAPublicKey
    not_before: float | None = None
    not_after: float | None = None


RefreshCallback = Callable[[], Iterable[PlatformKey]]


def header_lookup(headers: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased copy of ``headers`` so lookups work for requests, Flask and plain dicts alike."""
    return {str(k).lower(): str(v) for k, v in headers.items()}


def certificate_key(pem: str | bytes) -> PlatformKey:
    """Build a :class:`PlatformKey` from a platform certificate; its serial is upper-case hex."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    cert = x509.load_pem_x509_certificate(data)
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("platform certificate does not hold an RSA key")
    return PlatformKey(
        serial=format(cert.serial_number, "X"),
        public_key=key,
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
    )


class PlatformKeys:
    """Thread-safe key ring + verifier for signed WeChat Pay messages.

    ``refresh`` (optional) downloads fresh platform certificates when an unknown serial appears; it is
    called at most once per ``refresh_interval`` seconds so random serials from an attacker cannot
    trigger an outbound download per request. ``clock`` returns Unix seconds (injectable for tests).
    """

    def __init__(
        self,
        keys: Iterable[PlatformKey] = (),
        *,
        clock: Callable[[], float] = time.time,
        refresh: RefreshCallback | None = None,
        refresh_interval: float = 300.0,
        max_skew_seconds: int = DEFAULT_MAX_SKEW_SECONDS,
    ) -> None:
        self._keys: dict[str, PlatformKey] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._refresh = refresh
        self._refresh_interval = refresh_interval
        self._last_refresh: float | None = None
        self._max_skew = max_skew_seconds
        for key in keys:
            self.add(key)

    # -- key management -----------------------------------------------------------------------------

    def add(self, key: PlatformKey) -> None:
        """Add or replace the key for ``key.serial``."""
        with self._lock:
            self._keys[key.serial.upper()] = key

    def add_certificate(self, pem: str | bytes) -> str:
        """Add a platform certificate; returns its serial."""
        key = certificate_key(pem)
        self.add(key)
        return key.serial

    def add_public_key(self, key_id: str, pem: str | bytes) -> None:
        """Add a WeChat Pay public key (public-key mode); ``key_id`` must start with ``PUB_KEY_ID_``."""
        if not key_id.startswith(PUBLIC_KEY_ID_PREFIX):
            raise ValueError(f"WeChat Pay public key ids start with {PUBLIC_KEY_ID_PREFIX}")
        self.add(PlatformKey(serial=key_id, public_key=load_public_key(pem)))

    @property
    def clock(self) -> Callable[[], float]:
        """The clock used for timestamp and validity checks."""
        return self._clock

    def set_refresh(self, refresh: RefreshCallback | None) -> None:
        """Install the unknown-serial refresh callback (e.g. ``PayV3Client.download_certificates``)."""
        self._refresh = refresh

    def all_keys(self) -> list[PlatformKey]:
        """Every key held."""
        with self._lock:
            return list(self._keys.values())

    def serials(self) -> list[str]:
        """Serials currently held, sorted."""
        with self._lock:
            return sorted(self._keys)

    def get(self, serial: str) -> PlatformKey | None:
        """Key for ``serial`` (case-insensitive for certificate serials), or None."""
        with self._lock:
            return self._keys.get(serial.upper() if not serial.startswith(PUBLIC_KEY_ID_PREFIX) else serial)

    def preferred_serial(self) -> str | None:
        """Serial to name in a request's ``Wechatpay-Serial``: a public key first, else the newest cert."""
        with self._lock:
            keys = list(self._keys.values())
        public = [k for k in keys if k.serial.startswith(PUBLIC_KEY_ID_PREFIX)]
        if public:
            return public[0].serial
        now = self._clock()
        valid = [k for k in keys if self._in_validity(k, now)]
        if not valid:
            return None
        return max(valid, key=lambda k: k.not_before or 0.0).serial

    # -- verification -------------------------------------------------------------------------------

    def _in_validity(self, key: PlatformKey, now: float) -> bool:
        return (key.not_before is None or now >= key.not_before) and (
            key.not_after is None or now <= key.not_after
        )

    def _maybe_refresh(self, serial: str) -> PlatformKey | None:
        if self._refresh is None or serial.startswith(PUBLIC_KEY_ID_PREFIX):
            # §3.3 rule 5: an unknown public-key id is a configuration error, nothing to download.
            return None
        with self._lock:
            now = self._clock()
            if self._last_refresh is not None and now - self._last_refresh < self._refresh_interval:
                return None
            self._last_refresh = now
        try:
            fresh = list(self._refresh())
        except Exception as exc:
            raise VerificationError(
                f"unknown Wechatpay-Serial {serial!r} and certificate refresh failed", code="UNKNOWN_SERIAL"
            ) from exc
        for key in fresh:
            self.add(key)
        return self.get(serial)

    def verify(self, headers: Mapping[str, str], body: bytes) -> str:
        """Verify signed ``body`` against its ``Wechatpay-*`` headers; returns the serial used.

        Raises :class:`VerificationError` for missing/malformed headers, a stale or future
        timestamp (±5 min), a ``WECHATPAY/SIGNTEST/`` probe, an unknown serial or a bad signature.
        """
        h = header_lookup(headers)
        timestamp = h.get("wechatpay-timestamp", "")
        nonce = h.get("wechatpay-nonce", "")
        signature = h.get("wechatpay-signature", "")
        serial = h.get("wechatpay-serial", "").strip()
        sig_type = h.get("wechatpay-signature-type")
        if not (timestamp and nonce and signature and serial):
            # §3.3 rule 2: a signed-looking success without signature headers is forged.
            raise VerificationError("missing Wechatpay-* signature headers", code="SIGNATURE_MISSING")
        if not all(value.isascii() for value in (nonce, signature, serial)):
            # WeChat sends ASCII only; anything else cannot even be put into the signed message.
            raise VerificationError("non-ASCII Wechatpay-* header", code="HEADER_MALFORMED")
        if sig_type is not None and sig_type != AUTH_SCHEMA:
            raise VerificationError(
                f"unsupported Wechatpay-Signature-Type {sig_type!r}", code="SIGNATURE_TYPE"
            )
        if signature.startswith(SIGNTEST_PREFIX):
            # §3.3 rule 3: signature-probe traffic never verifies and must not be processed.
            raise VerificationError("signature probe (WECHATPAY/SIGNTEST/)", code="SIGNATURE_PROBE")
        # ASCII digits only: str.isdigit() also accepts '²³', which int() refuses.
        if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
            raise VerificationError("malformed Wechatpay-Timestamp", code="TIMESTAMP_MALFORMED")
        now = self._clock()
        if abs(now - int(timestamp)) >= self._max_skew:
            raise VerificationError("Wechatpay-Timestamp outside the ±5 minute window", code="TIMESTAMP_SKEW")
        key = self.get(serial) or self._maybe_refresh(serial)
        if key is None:
            raise VerificationError(f"unknown Wechatpay-Serial {serial!r}", code="UNKNOWN_SERIAL")
        if not self._in_validity(key, now):
            raise VerificationError(f"platform certificate {serial} is not valid now", code="CERT_EXPIRED")
        # §3.3 rule 6: the exact received bytes, never re-serialised JSON.
        if not rsa_sha256_verify(key.public_key, v3_response_message(timestamp, nonce, body), signature):
            raise VerificationError("Wechatpay-Signature does not verify", code="SIGNATURE_INVALID")
        return key.serial
