"""Forge WeChat Pay notifications with a merchant's own keys: validly signed, so only Hongli's
business checks (amount, mchid, appid, out_trade_no, state) stand between them and the ledger.

Knobs break one thing at a time: the timestamp, the signature, the serial, the ciphertext.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from wechat.crypto import aead_encrypt, rsa_sha256_sign, v2_sign, v3_response_message
from wechat.sandbox.clock import rfc3339
from wechat.xml import to_xml


@dataclass(frozen=True)
class Forger:
    """Signs like WeChat Pay for one merchant: ``key``/``serial`` is a key Hongli trusts for it."""

    mchid: str
    appid: str
    apiv3_key: str
    key: rsa.RSAPrivateKey
    serial: str
    v2_key: str = ""
    other_key: rsa.RSAPrivateKey | None = None  # a key that is *not* the one ``serial`` names

    @classmethod
    def of_sandbox(cls, world: Any, mchid: str, appid: str) -> Forger:
        """The sandbox merchant's WeChat Pay public key pair (Hongli has the public half)."""
        merchant = world.state.merchants[mchid]
        return cls(
            mchid,
            appid,
            merchant.apiv3_key,
            merchant.pubkey_key,
            merchant.pubkey_id,
            merchant.v2_key,
            other_key=merchant.platform_key,
        )

    def transaction(self, out_trade_no: str, total: int, **changes: Any) -> dict[str, Any]:
        """A TRANSACTION.SUCCESS resource (§3.10); ``changes`` override any field."""
        resource: dict[str, Any] = {
            "appid": self.appid,
            "mchid": self.mchid,
            "out_trade_no": out_trade_no,
            "transaction_id": "4200" + "".join(secrets.choice("0123456789") for _ in range(24)),
            "trade_type": "JSAPI",
            "trade_state": "SUCCESS",
            "trade_state_desc": "支付成功",
            "bank_type": "OTHERS",
            "attach": "",
            "success_time": rfc3339(time.time()),
            "payer": {"openid": "o-forged"},
            "amount": {"total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY"},
        }
        return resource | changes

    def body(
        self,
        resource: dict[str, Any],
        *,
        event_type: str = "TRANSACTION.SUCCESS",
        tamper: bool = False,
        notification_id: str | None = None,
    ) -> bytes:
        """The JSON envelope with an AEAD-encrypted resource; ``tamper`` flips a ciphertext byte."""
        original_type, associated = (
            ("refund", "refund") if event_type.startswith("REFUND.") else ("transaction", "transaction")
        )
        nonce = secrets.token_hex(6)
        plaintext = json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode()
        ciphertext = aead_encrypt(self.apiv3_key, nonce, plaintext, associated)
        if tamper:
            flipped = "A" if ciphertext[5] != "A" else "B"
            ciphertext = ciphertext[:5] + flipped + ciphertext[6:]
        envelope = {
            "id": notification_id or secrets.token_hex(18),
            "create_time": rfc3339(time.time()),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": "forged",
            "resource": {
                "original_type": original_type,
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": ciphertext,
                "associated_data": associated,
                "nonce": nonce,
            },
        }
        return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()

    def headers(
        self,
        body: bytes,
        *,
        timestamp: int | None = None,
        serial: str | None = None,
        signature: str | None = None,
        key: rsa.RSAPrivateKey | None = None,
    ) -> dict[str, str]:
        """Wechatpay-* headers over ``body`` (§3.3); each argument replaces one honest part."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        nonce = secrets.token_hex(16)
        return {
            "Content-Type": "application/json",
            "Wechatpay-Timestamp": ts,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": signature
            if signature is not None
            else rsa_sha256_sign(key or self.key, v3_response_message(ts, nonce, body)),
            "Wechatpay-Serial": serial or self.serial,
            "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
        }

    def signed(self, resource: dict[str, Any], **kwargs: Any) -> tuple[dict[str, str], bytes]:
        """(headers, body) of an honest-looking v3 notification of ``resource``."""
        body_args = {k: kwargs.pop(k) for k in ("event_type", "tamper", "notification_id") if k in kwargs}
        body = self.body(resource, **body_args)
        return self.headers(body, **kwargs), body

    def v2_payment(
        self, out_trade_no: str, total: int, *, sign_key: str | None = None, **changes: str
    ) -> bytes:
        """A v2 payment notification (§4.3), signed with the merchant's v2 key (or ``sign_key``)."""
        fields: dict[str, str] = {
            "return_code": "SUCCESS",
            "return_msg": "OK",
            "appid": self.appid,
            "mch_id": self.mchid,
            "nonce_str": secrets.token_hex(16),
            "result_code": "SUCCESS",
            "openid": "o-forged",
            "is_subscribe": "N",
            "trade_type": "JSAPI",
            "bank_type": "OTHERS",
            "total_fee": str(total),
            "fee_type": "CNY",
            "cash_fee": str(total),
            "transaction_id": "4200" + "".join(secrets.choice("0123456789") for _ in range(24)),
            "out_trade_no": out_trade_no,
            "time_end": time.strftime("%Y%m%d%H%M%S"),
        } | changes
        fields["sign"] = v2_sign(fields, sign_key or self.v2_key)
        return to_xml(fields).encode()
