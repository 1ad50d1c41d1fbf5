"""Staff password hashing (argon2id) and the password policy."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.core.errors import InvalidInput

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
# argon2-cffi's defaults are RFC 9106's "second recommended" argon2id profile (t=3, m=64 MiB, p=4).
_HASHER = PasswordHasher()


@dataclass(frozen=True)
class Verification:
    ok: bool
    new_hash: str | None = None  # set when the stored hash used older parameters


def check_password_policy(password: str) -> None:
    """Raise InvalidInput unless ``password`` is 12 to 256 characters and not only whitespace."""
    if len(password) < MIN_PASSWORD_LENGTH or len(password) > MAX_PASSWORD_LENGTH or not password.strip():
        raise InvalidInput(
            f"a password needs {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters",
            details={"field": "password"},
        )


def hash_password(password: str) -> str:
    """A fresh argon2id hash of ``password`` (after checking the policy)."""
    check_password_policy(password)
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> Verification:
    """Whether ``password`` matches; on a match with outdated parameters, a replacement hash."""
    try:
        _HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return Verification(ok=False)
    if _HASHER.check_needs_rehash(stored_hash):
        return Verification(ok=True, new_hash=_HASHER.hash(password))
    return Verification(ok=True)


@cache
def _dummy_hash() -> str:
    return _HASHER.hash("hongli-dummy-password-for-timing")


def burn_dummy_verify(password: str) -> None:
    """Spend the time of one verification (for an unknown email) and discard the answer.

    Verifying against a throwaway hash makes "no such account" cost as long as "wrong password".
    """
    verify_password(_dummy_hash(), password)
