"""Envelope encryption for secrets at rest (merchant credentials, WeChat session keys).

Each value gets its own random data key; the value is sealed with AES-256-GCM under the data key, and
the data key with AES-256-GCM under the deployment's master key. Both layers authenticate a
``context`` string (e.g. ``merchant:7:credentials``) so a sealed value cannot be moved to another row.
Rotating the master key re-wraps data keys only (``flask --app wsgi merchants reseal``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = 1


class SealError(Exception):
    """A sealed value cannot be opened: unknown master key, wrong context, or tampering."""


def key_id(master_key: bytes) -> str:
    """A short public fingerprint of a master key (stored beside sealed values)."""
    return hashlib.sha256(b"hongli-master-key:" + master_key).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Sealer:
    """Seals with the current master key; opens with the current or any previous key."""

    def __init__(self, current: bytes, previous: Sequence[bytes] = ()) -> None:
        if len(current) != 32 or any(len(k) != 32 for k in previous):
            raise ValueError("master keys are 32 bytes")
        self.current_kid = key_id(current)
        self._keys = {key_id(k): k for k in (*previous, current)}

    def seal(self, plaintext: bytes, *, context: str) -> str:
        data_key = AESGCM.generate_key(bit_length=256)
        aad = context.encode()
        wrap_nonce, data_nonce = os.urandom(12), os.urandom(12)
        wrapped = AESGCM(self._keys[self.current_kid]).encrypt(wrap_nonce, data_key, aad)
        ciphertext = AESGCM(data_key).encrypt(data_nonce, plaintext, aad)
        return json.dumps(
            {
                "v": _VERSION,
                "kid": self.current_kid,
                "key": _b64(wrap_nonce + wrapped),
                "data": _b64(data_nonce + ciphertext),
            },
            separators=(",", ":"),
        )

    def open(self, sealed: str, *, context: str) -> bytes:
        try:
            envelope = json.loads(sealed)
            master = self._keys[envelope["kid"]]
            wrapped = base64.b64decode(envelope["key"])
            data = base64.b64decode(envelope["data"])
            aad = context.encode()
            data_key = AESGCM(master).decrypt(wrapped[:12], wrapped[12:], aad)
            return AESGCM(data_key).decrypt(data[:12], data[12:], aad)
        except KeyError as exc:
            raise SealError(f"sealed with an unknown master key or malformed ({exc})") from None
        except (InvalidTag, ValueError, TypeError) as exc:
            raise SealError(f"cannot open sealed value: {type(exc).__name__}") from None

    def seal_text(self, text: str, *, context: str) -> str:
        return self.seal(text.encode(), context=context)

    def open_text(self, sealed: str, *, context: str) -> str:
        return self.open(sealed, context=context).decode()

    def is_current(self, sealed: str) -> bool:
        """Whether ``sealed`` is wrapped by the current master key (else it needs resealing)."""
        try:
            return bool(json.loads(sealed).get("kid") == self.current_kid)
        except (ValueError, AttributeError):
            return False

    def reseal(self, sealed: str, *, context: str) -> str:
        """The same plaintext sealed under the current master key."""
        return self.seal(self.open(sealed, context=context), context=context)
