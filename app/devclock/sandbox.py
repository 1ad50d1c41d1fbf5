"""The WeChat sandbox's clock, through its admin API (``/_sandbox/clock``) at Hongli's configured WeChat
URLs: the sandbox is another process (in-process in tests) and never imports app/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import requests

from app.settings import Settings


class SandboxUnreachable(Exception):
    """The sandbox did not answer its clock API as expected."""


def sandbox_bases(settings: Settings) -> list[str]:
    """The distinct base URLs of Hongli's WeChat settings that point at a local sandbox."""
    bases: list[str] = []
    for name in settings.wechat.sandbox_urls():
        base = str(getattr(settings.wechat, name))
        if base not in bases:
            bases.append(base)
    return bases


def read_clock(base: str, *, timeout: float) -> datetime:
    """The sandbox's business time."""
    return _now(_call("GET", f"{base}/_sandbox/clock", None, timeout))


def advance_clock(base: str, seconds: int, *, timeout: float) -> datetime:
    """Move the sandbox's business time forward; its timers (red-packet refunds, transfer-bill expiry,
    notification retries) fire on the way. Its new time."""
    _call("POST", f"{base}/_sandbox/clock/advance", {"seconds": seconds}, timeout)
    return read_clock(base, timeout=timeout)


def _call(method: str, url: str, body: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
    try:
        response = requests.request(method, url, json=body, timeout=timeout)
    except requests.RequestException as exc:
        raise SandboxUnreachable(f"{url}: {type(exc).__name__}") from exc
    if response.status_code != 200:
        raise SandboxUnreachable(f"{url}: HTTP {response.status_code} (is this the WeChat sandbox?)")
    try:
        data = response.json()
    except ValueError as exc:
        raise SandboxUnreachable(f"{url}: not JSON (is this the WeChat sandbox?)") from exc
    if not isinstance(data, dict):
        raise SandboxUnreachable(f"{url}: unexpected answer")
    return data


def _now(data: dict[str, Any]) -> datetime:
    now = data.get("now")
    if not isinstance(now, (int, float)) or isinstance(now, bool):
        raise SandboxUnreachable("the sandbox's clock answer has no numeric 'now'")
    return datetime.fromtimestamp(now, UTC)
