"""Pure signing / encryption primitives for WeChat Pay v2, v3 and the official-account APIs.

No I/O and no clock reads except the defaults of ``generate_nonce`` / ``unix_timestamp``; every
function takes its inputs explicitly so it can be checked against the public vectors.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets
import string
import time
from collections.abc import Iterable, Mapping

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP, PKCS1v15
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wechat.errors import VerificationError

__all__ = [
    "AUTH_SCHEMA",
    "aead_decrypt",
    "aead_encrypt",
    "aes_cbc_decrypt",
    "authorization_header",
    "card_signature",
    "generate_nonce",
    "load_private_key",
    "load_public_key",
    "parse_authorization",
    "pay_sign_message",
    "request_payment_sign",
    "rsa_oaep_encrypt",
    "rsa_sha256_sign",
    "rsa_sha256_verify",
    "sha1_sorted_signature",
    "unix_timestamp",
    "v2_sign",
    "v2_sign_string",
    "v2_verify",
    "v3_request_message",
    "v3_response_message",
]

AUTH_SCHEMA = "WECHATPAY2-SHA256-RSA2048"
_ALNUM = string.ascii_letters + string.digits


def generate_nonce(length: int = 32) -> str:
    """Random ``[0-9A-Za-z]`` string from the OS CSPRNG (§3.2: SDKs use 32 alphanumerics)."""
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def unix_timestamp() -> str:
    """Current Unix seconds as the decimal string WeChat signs."""
    return str(int(time.time()))


def _b(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


# --- RSA keys ---------------------------------------------------------------------------------------


def load_private_key(pem: str | bytes) -> rsa.RSAPrivateKey:
    """Load an unencrypted PKCS#8 or PKCS#1 RSA private key; raise ValueError otherwise."""
    return _load_private_key(_b(pem))


# Loading validates the RSA key (~35 ms for 2048 bits) and a client is built per call (e.g. every payout
# pass): keep the few merchants' parsed keys. Key objects are immutable and safe to share between threads.
@functools.lru_cache(maxsize=128)
def _load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("WeChat Pay merchant keys are RSA keys")
    return key


def load_public_key(pem: str | bytes) -> rsa.RSAPublicKey:
    """Load an RSA public key from a PEM certificate or a PEM public key."""
    data = _b(pem)
    key: object
    if b"-----BEGIN CERTIFICATE-----" in data:
        key = x509.load_pem_x509_certificate(data).public_key()
    else:
        key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("WeChat Pay platform keys are RSA keys")
    return key


def rsa_sha256_sign(private_key: rsa.RSAPrivateKey, message: bytes) -> str:
    """base64(RSASSA-PKCS1-v1_5(SHA-256)) — deterministic, so vectors compare exactly."""
    return base64.b64encode(private_key.sign(message, PKCS1v15(), hashes.SHA256())).decode("ascii")


# Stateless parameter objects, built once rather than per signature checked.
_PKCS1V15 = PKCS1v15()
_SHA256 = hashes.SHA256()


def rsa_sha256_verify(public_key: rsa.RSAPublicKey, message: bytes, signature_b64: str) -> bool:
    """True iff ``signature_b64`` is a valid SHA256withRSA signature of ``message``."""
    try:
        signature = binascii.a2b_base64(signature_b64, strict_mode=True)
        public_key.verify(signature, message, _PKCS1V15, _SHA256)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def rsa_oaep_encrypt(public_key: rsa.RSAPublicKey, plaintext: str) -> str:
    """Encrypt a sensitive field (e.g. transfer ``user_name``) with RSA-OAEP(SHA-1) (§3.5)."""
    padding_ = OAEP(mgf=MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303
    return base64.b64encode(public_key.encrypt(plaintext.encode("utf-8"), padding_)).decode("ascii")


# --- Pay v3 request / response signatures (§3.2, §3.3) ----------------------------------------------


def v3_request_message(method: str, canonical_url: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """The five ``\\n``-terminated lines a merchant signs: method, path?query, ts, nonce, body bytes."""
    return b"".join(
        (
            method.upper().encode("ascii"),
            b"\n",
            canonical_url.encode("utf-8"),
            b"\n",
            timestamp.encode("ascii"),
            b"\n",
            nonce.encode("ascii"),
            b"\n",
            body,
            b"\n",
        )
    )


def v3_response_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """The three lines WeChat signs on responses and notifications (§3.3); body is the raw bytes."""
    return timestamp.encode("ascii") + b"\n" + nonce.encode("ascii") + b"\n" + body + b"\n"


def authorization_header(
    *,
    mchid: str,
    serial_no: str,
    private_key: rsa.RSAPrivateKey,
    method: str,
    canonical_url: str,
    body: bytes,
    timestamp: str,
    nonce: str,
) -> str:
    """``Authorization`` value for one v3 request (§3.2; parameter order as the official example)."""
    signature = rsa_sha256_sign(
        private_key, v3_request_message(method, canonical_url, timestamp, nonce, body)
    )
    return (
        f'{AUTH_SCHEMA} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
        f'timestamp="{timestamp}",serial_no="{serial_no}"'
    )


def parse_authorization(header: str) -> dict[str, str]:
    """Split a v3 ``Authorization`` header into its parameters (any order); ValueError if malformed."""
    schema, _, params = header.partition(" ")
    if schema != AUTH_SCHEMA or not params:
        raise ValueError("not a WECHATPAY2-SHA256-RSA2048 Authorization header")
    result: dict[str, str] = {}
    for part in params.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or len(value) < 2 or not (value.startswith('"') and value.endswith('"')):
            raise ValueError(f"malformed Authorization parameter {part!r}")
        result[name] = value[1:-1]
    missing = {"mchid", "nonce_str", "signature", "timestamp", "serial_no"} - result.keys()
    if missing:
        raise ValueError(f"Authorization header lacks {sorted(missing)}")
    return result


# --- wx.requestPayment paySign (§3.8) ---------------------------------------------------------------


def pay_sign_message(appid: str, timestamp: str, nonce: str, package: str) -> bytes:
    """Four ``\\n``-terminated lines: appId, timeStamp, nonceStr, package."""
    return f"{appid}\n{timestamp}\n{nonce}\n{package}\n".encode()


def request_payment_sign(
    private_key: rsa.RSAPrivateKey, *, appid: str, timestamp: str, nonce: str, package: str
) -> str:
    """RSA ``paySign`` for ``wx.requestPayment`` / ``getBrandWCPayRequest`` (signType RSA)."""
    return rsa_sha256_sign(private_key, pay_sign_message(appid, timestamp, nonce, package))


# --- AEAD_AES_256_GCM (§3.5) ------------------------------------------------------------------------


def aead_decrypt(apiv3_key: str | bytes, nonce: str, ciphertext_b64: str, associated_data: str) -> bytes:
    """Decrypt a notification / certificate resource; VerificationError (final) on a bad tag or key.

    The key is the APIv3 key's ASCII bytes; 16-byte keys are accepted because the official
    Go/Java vectors use them (vectors §12, §13a), real keys are 32 bytes.
    """
    key = _b(apiv3_key)
    if len(key) not in (16, 32):
        raise VerificationError("APIv3 key must be 32 bytes", code="BAD_APIV3_KEY", ambiguous=False)
    try:
        data = binascii.a2b_base64(ciphertext_b64, strict_mode=True)
        return _aesgcm(key).decrypt(nonce.encode("ascii"), data, associated_data.encode("utf-8"))
    except (InvalidTag, binascii.Error, ValueError) as exc:
        # wechatpy returns "" here and fails later in json.loads; we fail loudly instead (§3.5).
        raise VerificationError(
            "AEAD_AES_256_GCM decryption failed (wrong APIv3 key or tampered resource)",
            code="DECRYPT_FAILED",
            ambiguous=False,
        ) from exc


# Every notification of a merchant is decrypted with the same APIv3 key: keep its key schedule. (The key is
# held in memory by the merchant's snapshot anyway; an AESGCM object is safe to share between threads.)
@functools.lru_cache(maxsize=128)
def _aesgcm(key: bytes) -> AESGCM:
    return AESGCM(key)


def aead_encrypt(apiv3_key: str | bytes, nonce: str, plaintext: bytes, associated_data: str) -> str:
    """Inverse of :func:`aead_decrypt`: base64(ciphertext || 16-byte tag)."""
    sealed = AESGCM(_b(apiv3_key)).encrypt(nonce.encode("ascii"), plaintext, associated_data.encode("utf-8"))
    return base64.b64encode(sealed).decode("ascii")


# --- AES-CBC with PKCS#7 (mini-program encryptedData §1.2, OA safe mode §7b.3) ---------------------


def aes_cbc_decrypt(key: bytes, iv: bytes, data: bytes, *, block_bytes: int = 16) -> bytes:
    """AES-CBC decrypt and strip strictly-checked PKCS#7 padding of ``block_bytes`` (16 or 32)."""
    if not data or len(data) % 16:
        raise ValueError("ciphertext is not a whole number of AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    plain = decryptor.update(data) + decryptor.finalize()
    if block_bytes == 16:
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(plain) + unpadder.finalize()
    # WeChat's safe mode pads to 32-byte blocks, which the cryptography unpadder does not support.
    pad = plain[-1]
    if not 1 <= pad <= block_bytes or plain[-pad:] != bytes([pad]) * pad:
        raise ValueError("bad PKCS#7 padding")
    return plain[:-pad]


def aes_cbc_encrypt(key: bytes, iv: bytes, data: bytes, *, block_bytes: int = 16) -> bytes:
    """AES-CBC encrypt after PKCS#7 padding to ``block_bytes``."""
    pad = block_bytes - len(data) % block_bytes
    padded = data + bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


# --- Pay v2 sign (§4.2) -----------------------------------------------------------------------------

V2_MD5 = "MD5"
V2_HMAC = "HMAC-SHA256"


def v2_sign_string(params: Mapping[str, object], api_key: str) -> str:
    """``k1=v1&…&key=API_KEY`` over non-empty params except ``sign``, keys in ASCII order."""
    parts = [f"{k}={params[k]}" for k in sorted(params) if k != "sign" and str(params[k]) != ""]
    parts.append(f"key={api_key}")
    return "&".join(parts)


def v2_sign(params: Mapping[str, object], api_key: str, sign_type: str = V2_MD5) -> str:
    """Upper-case hex MD5 or HMAC-SHA256 (key = APIv2 key) of :func:`v2_sign_string`."""
    message = v2_sign_string(params, api_key).encode("utf-8")
    if sign_type == V2_MD5:
        return hashlib.md5(message).hexdigest().upper()  # noqa: S324 - the protocol mandates MD5
    if sign_type == V2_HMAC:
        return hmac.new(api_key.encode("utf-8"), message, hashlib.sha256).hexdigest().upper()
    raise ValueError(f"unsupported v2 sign_type {sign_type!r}")


def v2_verify(params: Mapping[str, str], api_key: str) -> bool:
    """Check ``sign`` over every received field, using the declared ``sign_type`` first.

    Falls back to the other algorithm because WeChat has been seen to sign a few HMAC-merchant
    notifications with MD5 (§4.3 community report).
    """
    received = params.get("sign", "")
    if not received:
        return False
    declared = params.get("sign_type") or V2_MD5
    order = [declared, V2_HMAC if declared == V2_MD5 else V2_MD5]
    for sign_type in order:
        if sign_type in (V2_MD5, V2_HMAC) and hmac.compare_digest(
            v2_sign(params, api_key, sign_type), received.upper()
        ):
            return True
    return False


# --- SHA-1 signatures of the official-account side (§7b.1, §7b.3, vectors §3-§6) --------------------


def sha1_sorted_signature(values: Iterable[str]) -> str:
    """sha1 of the given strings sorted and concatenated (server URL check, msg_signature, cardExt)."""
    return hashlib.sha1("".join(sorted(values)).encode("utf-8")).hexdigest()  # noqa: S324


def card_signature(
    *, api_ticket: str, timestamp: str, nonce_str: str, card_id: str, code: str = "", openid: str = ""
) -> str:
    """``cardExt.signature`` for ``wx.addCard``: the VALUES sorted, empty ones included (§7b.1)."""
    return sha1_sorted_signature([api_ticket, timestamp, nonce_str, card_id, code, openid])


def jsapi_config_signature(*, jsapi_ticket: str, noncestr: str, timestamp: str, url: str) -> str:
    """``wx.config`` signature: sha1 of ``key=value`` pairs sorted by key (vectors §5)."""
    raw = f"jsapi_ticket={jsapi_ticket}&noncestr={noncestr}&timestamp={timestamp}&url={url}"
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()  # noqa: S324


def check_raw_data_signature(raw_data: str, session_key: str, signature: str) -> bool:
    """Mini-program ``rawData`` check: ``signature == sha1(rawData + session_key)`` (§1.2)."""
    expected = hashlib.sha1((raw_data + session_key).encode("utf-8")).hexdigest()  # noqa: S324
    return hmac.compare_digest(expected, signature)
