"""Official-account server URL: signature check, safe-mode (AES) crypto, event parsing (§7b.2, §7b.3).

The AES payload (random 16 bytes, length, message, appid; AES-256-CBC, IV = key[:16], PKCS#7 to 32-byte
blocks) is wechatpy's ``PrpCrypto``. Around it, ours: every signature compared in constant time
(wechatpy compares with ``!=``) and checked *before* anything is decrypted, every XML document parsed
with :func:`wechat.xml.parse_xml` (defusedxml: no DTD, no entities — wechatpy's ``xmltodict`` would read
them), and failures raised as :class:`VerificationError` with a code. wechatpy does not check the
padding it strips; a payload that passed the signature check was made by the token's holder, so a
padding check would add nothing.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from dataclasses import dataclass, field
from typing import Any

from wechatpy.crypto import PrpCrypto
from wechatpy.exceptions import InvalidAppIdException

from wechat.crypto import sha1_sorted_signature
from wechat.errors import VerificationError
from wechat.xml import parse_xml

__all__ = ["MessageCrypto", "OAEvent", "check_server_signature", "parse_event"]


def check_server_signature(token: str, signature: str, timestamp: str, nonce: str) -> bool:
    """Plain-mode check: ``signature == sha1(sorted([token, timestamp, nonce]))``."""
    return hmac.compare_digest(sha1_sorted_signature([token, timestamp, nonce]), signature)


class _Prp(PrpCrypto):
    """wechatpy's payload crypto, with the 16 random bytes given (known-answer tests) or from the OS."""

    def __init__(self, key: bytes, prefix: bytes | None = None) -> None:
        super().__init__(key)
        self._prefix = prefix

    def get_random_string(self) -> bytes:
        return self._prefix if self._prefix is not None else os.urandom(16)


class MessageCrypto:
    """Safe-mode crypto for one account (its token, EncodingAESKey and appid)."""

    def __init__(self, token: str, encoding_aes_key: str, appid: str) -> None:
        try:
            key = base64.b64decode(encoding_aes_key + "=", validate=True)
        except binascii.Error as exc:
            raise ValueError("EncodingAESKey is not 43 base64 characters") from exc
        if len(key) != 32:
            raise ValueError("EncodingAESKey must decode to 32 bytes")
        self._token = token
        self._key = key
        self.appid = appid

    def _decrypt(self, encrypted: str) -> bytes:
        try:
            base64.b64decode(encrypted, validate=True)
            text: str = _Prp(self._key).decrypt(encrypted, self.appid)
        except InvalidAppIdException as exc:
            raise VerificationError(
                "safe-mode payload is for another appid", code="APPID_MISMATCH", ambiguous=False
            ) from exc
        except (binascii.Error, ValueError, IndexError, UnicodeDecodeError) as exc:
            raise VerificationError(
                "safe-mode payload does not decrypt", code="DECRYPT_FAILED", ambiguous=False
            ) from exc
        return text.encode("utf-8")

    def _check(self, signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        expected = sha1_sorted_signature([self._token, timestamp, nonce, encrypted])
        if not hmac.compare_digest(expected, signature):
            raise VerificationError("msg_signature does not match", code="SIGNATURE_INVALID", ambiguous=False)

    def decrypt_echostr(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """URL verification in safe mode: check and decrypt ``echostr``; answer it as the body."""
        self._check(msg_signature, timestamp, nonce, echostr)
        return self._decrypt(echostr).decode("utf-8")

    def decrypt_message(self, body: bytes, msg_signature: str, timestamp: str, nonce: str) -> bytes:
        """Check ``msg_signature`` over ``<Encrypt>`` and return the inner plaintext XML bytes."""
        encrypted = parse_xml(body).get("Encrypt")
        if not isinstance(encrypted, str) or not encrypted:
            raise VerificationError("no <Encrypt> element", code="MALFORMED", ambiguous=False)
        self._check(msg_signature, timestamp, nonce, encrypted)
        return self._decrypt(encrypted)

    def encrypt(self, plaintext: bytes, *, random_prefix: bytes | None = None) -> str:
        """base64 of AES(random16 || len || msg || appid); ``random_prefix`` only for known-answer tests."""
        if random_prefix is not None and len(random_prefix) != 16:
            raise ValueError("random prefix must be 16 bytes")
        encrypted: bytes = _Prp(self._key, random_prefix).encrypt(plaintext, self.appid)
        return encrypted.decode("ascii")

    def encrypt_reply(self, reply_xml: bytes, *, nonce: str, timestamp: str) -> str:
        """Full encrypted reply envelope ``<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>``."""
        encrypted = self.encrypt(reply_xml)
        signature = sha1_sorted_signature([self._token, timestamp, nonce, encrypted])
        return (
            f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt><MsgSignature><![CDATA[{signature}]]></MsgSignature>"
            f"<TimeStamp>{timestamp}</TimeStamp><Nonce><![CDATA[{nonce}]]></Nonce></xml>"
        )


@dataclass(frozen=True, slots=True)
class OAEvent:
    """A pushed message/event; ``fields`` keeps every element (``CardId``, ``UserCardCode``, …)."""

    to_user: str
    from_user: str
    create_time: int
    msg_type: str
    event: str | None
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def dedupe_key(self) -> str:
        """``FromUserName + CreateTime``: WeChat's own advice for de-duplicating retries (§7b.2)."""
        return f"{self.from_user}:{self.create_time}"

    @property
    def card_id(self) -> str | None:
        """``CardId`` of card events."""
        value = self.fields.get("CardId")
        return value if isinstance(value, str) else None

    @property
    def user_card_code(self) -> str | None:
        """``UserCardCode`` of card events."""
        value = self.fields.get("UserCardCode")
        return value if isinstance(value, str) else None


def parse_event(body: bytes) -> OAEvent:
    """Parse plaintext message XML (subscribe, user_get_card, user_consume_card, user_del_card, …)."""
    data = parse_xml(body)
    try:
        create_time = int(str(data.get("CreateTime", "")))
    except ValueError as exc:
        raise VerificationError(
            "message lacks a numeric CreateTime", code="MALFORMED", ambiguous=False
        ) from exc
    event = data.get("Event")
    return OAEvent(
        to_user=str(data.get("ToUserName", "")),
        from_user=str(data.get("FromUserName", "")),
        create_time=create_time,
        msg_type=str(data.get("MsgType", "")),
        event=str(event) if isinstance(event, str) and event else None,
        fields=data,
    )
