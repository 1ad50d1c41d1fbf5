"""WeChat-side cryptography for the sandbox, written directly on ``cryptography`` (protocol doc §3–§4, §7b.3).

Deliberately independent of Hongli's client modules in ``wechat/``, so the two cross-check each other.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
AUTH_SCHEMA = "WECHATPAY2-SHA256-RSA2048"
PROBE_PREFIX = "WECHATPAY/SIGNTEST/"

# ---------------------------------------------------------------- RSA keys and certificates


def generate_rsa_key() -> rsa.RSAPrivateKey:
    """A fresh RSA-2048 key (WeChat Pay keys are RSA-2048, protocol doc §3.1)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_pem(key: rsa.RSAPrivateKey) -> str:
    """PKCS#8 PEM, the shape of ``apiclient_key.pem``."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_key_pem(key: rsa.RSAPublicKey) -> str:
    """SubjectPublicKeyInfo PEM, the shape of the WeChat Pay public key download."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    """Load a public key from a PUBLIC KEY PEM or from a certificate PEM."""
    data = pem.strip().encode()
    key: object
    if b"BEGIN CERTIFICATE" in data:
        key = x509.load_pem_x509_certificate(data).public_key()
    else:
        key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def self_signed_certificate(
    key: rsa.RSAPrivateKey, serial: int, not_before: dt.datetime, not_after: dt.datetime
) -> str:
    """A platform certificate stand-in (subject mimics Tenpay's, protocol doc vectors §14)."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Hongli Sandbox"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Sandbox CA Center"),
            x509.NameAttribute(NameOID.COMMON_NAME, "WeChat Pay sandbox platform"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def rsa_sign(key: rsa.RSAPrivateKey, message: str) -> str:
    """base64(SHA256withRSA PKCS#1 v1.5) — the only v3 signature scheme (§3.2)."""
    sig = key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(sig).decode()


def rsa_verify(key: rsa.RSAPublicKey, message: bytes, signature_b64: str) -> bool:
    """True when ``signature_b64`` is a valid SHA256withRSA signature of ``message``."""
    try:
        sig = base64.b64decode(signature_b64, validate=True)
        key.verify(sig, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def rsa_oaep_decrypt(key: rsa.RSAPrivateKey, ciphertext_b64: str) -> str:
    """Decrypt a sensitive field (RSA/ECB/OAEPWithSHA-1AndMGF1Padding, §3.5)."""
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303
    return key.decrypt(base64.b64decode(ciphertext_b64), oaep).decode()


def rsa_oaep_encrypt(key: rsa.RSAPublicKey, text: str) -> str:
    """Encrypt a sensitive field as a merchant would (for tests and docs)."""
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303
    return base64.b64encode(key.encrypt(text.encode(), oaep)).decode()


# ---------------------------------------------------------------- v3 Authorization header

_AUTH_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class AuthHeader:
    """Parsed ``Authorization: WECHATPAY2-SHA256-RSA2048 …`` (parameter order is free, §3.2)."""

    mchid: str
    nonce_str: str
    timestamp: str
    serial_no: str
    signature: str


def parse_authorization(header: str) -> AuthHeader | None:
    """Parse the header; ``None`` when the schema or a parameter is missing."""
    schema, _, rest = header.strip().partition(" ")
    if schema != AUTH_SCHEMA:
        return None
    params = dict(_AUTH_PARAM.findall(rest))
    try:
        return AuthHeader(
            mchid=params["mchid"],
            nonce_str=params["nonce_str"],
            timestamp=params["timestamp"],
            serial_no=params["serial_no"],
            signature=params["signature"],
        )
    except KeyError:
        return None


def request_message(method: str, canonical_url: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """The five-line string a merchant signs (§3.2); body bytes are used exactly as sent."""
    head = f"{method}\n{canonical_url}\n{timestamp}\n{nonce}\n".encode()
    return head + body + b"\n"


def build_authorization(
    key: rsa.RSAPrivateKey,
    *,
    mchid: str,
    serial_no: str,
    method: str,
    canonical_url: str,
    body: bytes,
    timestamp: int,
    nonce: str,
) -> str:
    """Merchant-side header builder, used by docs, tests and the admin self-check."""
    message = request_message(method, canonical_url, str(timestamp), nonce, body)
    sig = base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()
    return (
        f'{AUTH_SCHEMA} mchid="{mchid}",nonce_str="{nonce}",signature="{sig}",'
        f'timestamp="{timestamp}",serial_no="{serial_no}"'
    )


def response_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """The three-line string WeChat signs on responses and notifications (§3.3)."""
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def sign_response(key: rsa.RSAPrivateKey, timestamp: str, nonce: str, body: bytes) -> str:
    """``Wechatpay-Signature`` value for a body."""
    sig = key.sign(response_message(timestamp, nonce, body), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(sig).decode()


# ---------------------------------------------------------------- AEAD_AES_256_GCM (§3.5)


def aead_encrypt(apiv3_key: str, nonce: str, associated_data: str, plaintext: bytes) -> str:
    """base64(ciphertext || tag) with the APIv3 key as 32 ASCII bytes and a 12-char nonce."""
    data = AESGCM(apiv3_key.encode()).encrypt(nonce.encode(), plaintext, associated_data.encode())
    return base64.b64encode(data).decode()


def aead_decrypt(apiv3_key: str, nonce: str, associated_data: str, ciphertext_b64: str) -> bytes | None:
    """Inverse of :func:`aead_encrypt`; ``None`` on a bad tag."""
    try:
        return AESGCM(apiv3_key.encode()).decrypt(
            nonce.encode(), base64.b64decode(ciphertext_b64), associated_data.encode()
        )
    except (InvalidTag, ValueError):
        return None


# ---------------------------------------------------------------- Pay v2 sign (§4.2)


def v2_sign(params: dict[str, str], api_key: str, sign_type: str = "MD5") -> str:
    """Upper-case hex MD5 or HMAC-SHA256 over sorted non-empty params plus ``&key=``."""
    pairs = [f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v not in ("", None)]
    string = "&".join(pairs) + f"&key={api_key}"
    if sign_type == "HMAC-SHA256":
        return hmac.new(api_key.encode(), string.encode(), hashlib.sha256).hexdigest().upper()
    return hashlib.md5(string.encode()).hexdigest().upper()  # noqa: S324 - the v2 protocol mandates MD5


# ---------------------------------------------------------------- Official-account message crypto (§7b.3)


def sha1_signature(*values: str) -> str:
    """sha1 of the values sorted as strings and concatenated (server URL and card signatures)."""
    return hashlib.sha1("".join(sorted(values)).encode()).hexdigest()  # noqa: S324 - protocol mandated


def _pkcs7_pad(data: bytes, block: int = 32) -> bytes:
    n = block - len(data) % block
    return data + bytes([n]) * n


def _pkcs7_unpad(data: bytes) -> bytes:
    n = data[-1]
    if n < 1 or n > 32:
        raise ValueError("bad padding")
    return data[:-n]


def wx_encrypt(encoding_aes_key: str, appid: str, message: bytes, random16: bytes) -> str:
    """WXBizMsgCrypt encryption: AES-256-CBC, IV = key[:16], PKCS#7 to 32-byte blocks."""
    key = base64.b64decode(encoding_aes_key + "=")
    plain = random16 + struct.pack(">I", len(message)) + message + appid.encode()
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(_pkcs7_pad(plain)) + enc.finalize()).decode()


def wx_decrypt(encoding_aes_key: str, encrypted_b64: str) -> tuple[bytes, str]:
    """Inverse of :func:`wx_encrypt`; returns (message, trailing appid)."""
    key = base64.b64decode(encoding_aes_key + "=")
    dec = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = _pkcs7_unpad(dec.update(base64.b64decode(encrypted_b64)) + dec.finalize())
    (length,) = struct.unpack(">I", plain[16:20])
    return plain[20 : 20 + length], plain[20 + length :].decode()


def wxa_encrypt(session_key_b64: str, iv: bytes, plaintext: bytes) -> str:
    """Mini-program open data: AES-128-CBC with the session key, PKCS#7 to 16-byte blocks (§1.2)."""
    key = base64.b64decode(session_key_b64)
    n = 16 - len(plaintext) % 16
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(enc.update(plaintext + bytes([n]) * n) + enc.finalize()).decode()


def sha1_hex(data: bytes) -> str:
    """Lower-case hex SHA1 (bill ``hash_value``, §8)."""
    return hashlib.sha1(data).hexdigest()  # noqa: S324 - protocol mandated
