"""Inbound WeChat Pay v3 notifications: verify the signature, then AEAD-decrypt the resource (§3.10)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wechat.crypto import aead_decrypt
from wechat.errors import VerificationError
from wechat.gateway_log import GatewayEvent, GatewayHook, emit, redact_body
from wechat.verify import PlatformKeys

__all__ = ["Notification", "parse_notification"]

AEAD_ALGORITHM = "AEAD_AES_256_GCM"


@dataclass(frozen=True, slots=True)
class Notification:
    """A verified, decrypted notification; ``resource`` is the decrypted JSON object."""

    id: str
    event_type: str
    resource_type: str
    summary: str
    create_time: str
    original_type: str
    resource: dict[str, Any]
    serial: str


def _reject(message: str, code: str, body: bytes, hook: GatewayHook | None) -> VerificationError:
    if hook is not None:
        emit(
            hook,
            GatewayEvent(
                direction="inbound",
                api="notification",
                idempotency_key=None,
                http_status=None,
                wechat_code=code,
                verified=False,
                body=redact_body({"raw_length": len(body)}),
            ),
        )
    # Inbound: nothing of ours is in doubt; the transport answers 4xx so WeChat retries.
    return VerificationError(message, code=code, ambiguous=False, raw_body=body[:4096])


def parse_notification(
    headers: Mapping[str, str],
    body: bytes,
    *,
    keys: PlatformKeys,
    apiv3_key: str,
    hook: GatewayHook | None = None,
) -> Notification:
    """Verify ``body`` (exact bytes received) against ``headers`` and decrypt its resource.

    Raises :class:`VerificationError` for any failure; the caller answers HTTP 4xx and does not
    process it (§3.3 rule 3, §3.10).
    """
    try:
        serial = keys.verify(headers, body)
    except VerificationError as exc:
        raise _reject(exc.message, exc.code or "VERIFICATION_FAILED", body, hook) from exc
    try:
        # UTF-8 JSON, decoded here: json.loads would first sniff bytes for UTF-16/32, which WeChat never sends.
        envelope = json.loads(body.decode("utf-8"))
        resource = envelope["resource"]
        if resource.get("algorithm") != AEAD_ALGORITHM:
            raise _reject(f"unsupported algorithm {resource.get('algorithm')!r}", "ALGORITHM", body, hook)
        plaintext = aead_decrypt(
            apiv3_key,
            str(resource["nonce"]),
            str(resource["ciphertext"]),
            str(resource.get("associated_data") or ""),
        )
        decrypted = json.loads(plaintext.decode("utf-8"))
        if not isinstance(decrypted, dict):
            raise ValueError("decrypted resource is not an object")
        notification = Notification(
            id=str(envelope["id"]),
            event_type=str(envelope["event_type"]),
            resource_type=str(envelope.get("resource_type", "")),
            summary=str(envelope.get("summary", "")),
            create_time=str(envelope.get("create_time", "")),
            original_type=str(resource.get("original_type", "")),
            resource=decrypted,
            serial=serial,
        )
    except VerificationError as exc:
        if exc.code == "DECRYPT_FAILED":
            raise _reject(exc.message, exc.code, body, hook) from exc
        raise
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise _reject(f"malformed notification: {exc}", "MALFORMED", body, hook) from exc
    if hook is not None:  # the redacted record is a third of the work: built only when someone keeps it
        emit(
            hook,
            GatewayEvent(
                direction="inbound",
                api=f"notification:{notification.event_type}",
                idempotency_key=_key_of(decrypted),
                http_status=None,
                wechat_code=None,
                verified=True,
                body=redact_body(
                    {"id": notification.id, "event_type": notification.event_type, "resource": decrypted}
                ),
            ),
        )
    return notification


def _key_of(resource: Mapping[str, Any]) -> str | None:
    for name in ("out_refund_no", "out_bill_no", "out_trade_no", "out_request_no", "coupon_id"):
        value = resource.get(name)
        if isinstance(value, str) and value:
            return value
    return None
