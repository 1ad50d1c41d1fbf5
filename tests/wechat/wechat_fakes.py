"""Test-time key material and a signer playing WeChat's side for ``responses`` callbacks."""

from __future__ import annotations

import base64
import datetime as dt
import functools

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

PAY_BASE = "https://pay.test"
APIV3_KEY = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"
PLATFORM_SERIAL = "5A11"


@functools.cache
def rsa_key(label: str) -> rsa.RSAPrivateKey:
    """One fresh 2048-bit key per label per test run (generation is the slow part)."""
    del label
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def self_signed_cert(
    key: rsa.RSAPrivateKey,
    serial: int,
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> str:
    """PEM of a self-signed certificate standing in for a WeChat Pay platform certificate."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com sign (test)")])
    start = not_before or dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    end = not_after or dt.datetime(2040, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def sign_b64(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def wechat_headers(
    key: rsa.RSAPrivateKey, serial: str, body: bytes, *, timestamp: int, nonce: str = "n0nce"
) -> dict[str, str]:
    """Headers WeChat puts on a signed answer or notification (§3.3), computed independently."""
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    return {
        "Wechatpay-Timestamp": str(timestamp),
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": sign_b64(key, message),
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
        "Request-ID": "req-1",
    }
