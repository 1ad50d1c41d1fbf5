"""Hook through which every WeChat exchange is reported, so the app can keep a gateway event log.

The clients call a :class:`GatewayHook` once per outbound call and once per inbound notification
with an already-redacted body; the app decides where to store it. Secrets never reach the hook.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = ["GatewayEvent", "GatewayHook", "emit", "emit_outbound", "mask_openid", "redact", "redact_body"]

logger = logging.getLogger(__name__)

Direction = Literal["outbound", "inbound"]

# Keys whose values are secrets or bearer material: dropped entirely (conventions "redacted body").
_SECRET_KEYS = frozenset(
    {
        "sign",
        "paysign",
        "signature",
        "msg_signature",
        "session_key",
        "secret",
        "appsecret",
        "access_token",
        "refresh_token",
        "ticket",
        "api_key",
        "apiv3_key",
        "key",
        "private_key",
        "ciphertext",
        "encrypt",
        "encrypt_certificate",
        "encrypteddata",
        "encrypted_data",
        "iv",
        "js_code",
        "user_name",
        "re_user_name",
        "true_name",
        "package_info",
        "package",
        "nonce_str",
    }
)
_OPENID_KEYS = frozenset({"openid", "re_openid", "unionid", "sub_openid", "fromusername", "payer_openid"})
MAX_BODY_CHARS = 4000


@dataclass(frozen=True, slots=True)
class GatewayEvent:
    """One exchange with WeChat. ``verified`` is None when no signature applies to the message."""

    direction: Direction
    api: str
    idempotency_key: str | None
    http_status: int | None
    wechat_code: str | None
    verified: bool | None
    body: str
    request_id: str | None = None


class GatewayHook(Protocol):
    """Receives each :class:`GatewayEvent`; must not raise (failures are logged and ignored)."""

    def __call__(self, event: GatewayEvent) -> None: ...


def mask_openid(value: str) -> str:
    """Keep enough of an openid to correlate in logs, not enough to address the user."""
    if len(value) <= 8:
        return "***"
    return f"{value[:4]}***{value[-4:]}"


# Per key as received, what redaction does with its value: the lower-casing and set look-ups are made
# once per distinct key (notifications and answers repeat the same few dozen), not once per value.
_KEEP, _SECRET, _OPENID = 0, 1, 2
_ACTIONS: dict[str, int] = {}
_MAX_ACTIONS = 4096  # keys are WeChat's, but a bound keeps an odd answer from growing the table
_SCALARS = frozenset({str, int, float, bool, type(None)})
# json.dumps builds an encoder per call; its arguments never change here. No circularity check: redact()
# has already copied the structure, and would have recursed without end on a cycle.
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str, check_circular=False)


def _action(key: str) -> int:
    lowered = key.lower()
    action = _SECRET if lowered in _SECRET_KEYS else _OPENID if lowered in _OPENID_KEYS else _KEEP
    if len(_ACTIONS) < _MAX_ACTIONS:
        _ACTIONS[key] = action
    return action


def redact(value: Any) -> Any:
    """Return a copy of a JSON-like structure with secrets removed and openids masked."""
    if type(value) is dict or isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            name = k if type(k) is str else str(k)
            action = _ACTIONS.get(name)
            if action is None:
                action = _action(name)
            if action == _SECRET:
                out[name] = "[redacted]"
            elif action == _OPENID and isinstance(v, str):
                out[name] = mask_openid(v)
            else:
                out[name] = v if type(v) in _SCALARS else redact(v)
        return out
    if isinstance(value, list):
        return [v if type(v) in _SCALARS else redact(v) for v in value]
    return value


def redact_body(data: Any) -> str:
    """Redacted JSON text of ``data`` (parsed request or response), truncated for storage."""
    try:
        text = _ENCODER.encode(redact(data))
    except (TypeError, ValueError):
        text = "[unserialisable]"
    return text if len(text) <= MAX_BODY_CHARS else text[:MAX_BODY_CHARS] + "…"


def emit_outbound(
    hook: GatewayHook | None,
    *,
    api: str,
    key: str | None,
    status: int | None,
    code: str | None,
    verified: bool | None,
    request_body: Any,
    response_body: Any,
    request_id: str | None = None,
) -> None:
    """Report one outbound call (request and answer, redacted) to ``hook``."""
    emit(
        hook,
        GatewayEvent(
            direction="outbound",
            api=api,
            idempotency_key=key,
            http_status=status,
            wechat_code=code,
            verified=verified,
            body=redact_body({"request": request_body, "response": response_body}),
            request_id=request_id,
        ),
    )


def emit(hook: GatewayHook | None, event: GatewayEvent) -> None:
    """Deliver ``event`` to ``hook``; a failing hook must not turn a settled call into an error."""
    if hook is None:
        return
    try:
        hook(event)
    except Exception:
        # Recording is best effort: raising here would report a payout that WeChat accepted as failed.
        logger.exception("gateway log hook failed for %s", event.api)
