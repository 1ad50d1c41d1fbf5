"""Envelope encryption: bound to its context, authenticated, openable across a key rotation."""

from __future__ import annotations

import json
import os

import pytest

from app.core.sealing import Sealer, SealError

KEY_A, KEY_B = os.urandom(32), os.urandom(32)


def test_round_trip_and_no_plaintext() -> None:
    sealed = Sealer(KEY_A).seal_text("apiv3-secret-value", context="merchant:1:credentials")
    assert "apiv3-secret-value" not in sealed
    assert Sealer(KEY_A).open_text(sealed, context="merchant:1:credentials") == "apiv3-secret-value"


def test_each_seal_uses_a_fresh_data_key() -> None:
    sealer = Sealer(KEY_A)
    first, second = (json.loads(sealer.seal(b"same", context="c")) for _ in range(2))
    assert first["key"] != second["key"] and first["data"] != second["data"]


def test_context_is_bound() -> None:
    sealed = Sealer(KEY_A).seal(b"x", context="merchant:1:credentials")
    with pytest.raises(SealError):
        Sealer(KEY_A).open(sealed, context="merchant:2:credentials")


def test_tampering_is_detected() -> None:
    envelope = json.loads(Sealer(KEY_A).seal(b"secret", context="c"))
    envelope["data"] = envelope["data"][:-4] + ("AAAA" if not envelope["data"].endswith("AAAA") else "BBBB")
    with pytest.raises(SealError):
        Sealer(KEY_A).open(json.dumps(envelope), context="c")
    with pytest.raises(SealError):
        Sealer(KEY_A).open("not json", context="c")


def test_rotation() -> None:
    sealed = Sealer(KEY_A).seal(b"v", context="c")
    rotating = Sealer(KEY_B, [KEY_A])
    assert not rotating.is_current(sealed)
    resealed = rotating.reseal(sealed, context="c")
    assert rotating.is_current(resealed)
    assert Sealer(KEY_B).open(resealed, context="c") == b"v"
    with pytest.raises(SealError, match="unknown master key"):
        Sealer(KEY_B).open(sealed, context="c")


def test_keys_must_be_32_bytes() -> None:
    with pytest.raises(ValueError):
        Sealer(b"short")
