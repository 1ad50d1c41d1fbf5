"""Outbound pushes: v3 Pay notifications and official-account XML events, with WeChat's retry schedules.

A delivery is attempted when business time reaches its due time (``Scheduler``); the HTTP call happens
outside ``World.lock`` so an in-process merchant may call back into the sandbox while handling it.
"""

from __future__ import annotations

import json
import re
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests

from wechat.sandbox import crypto
from wechat.sandbox.clock import rfc3339

if TYPE_CHECKING:
    from wechat.sandbox.state import App, Merchant
    from wechat.sandbox.world import World

# v3 payment notice retry schedule, 15 retries totalling 24h4m (protocol doc §3.10).
V3_RETRY_S: tuple[int, ...] = (
    15,
    15,
    30,
    180,
    600,
    1200,
    1800,
    1800,
    1800,
    3600,
    10800,
    10800,
    10800,
    21600,
    21600,
)
# COUPON.USE: "1min1次，总计9次" (§7a.5) — 8 retries after the first try.
COUPON_RETRY_S: tuple[int, ...] = (60,) * 8
# OA server pushes: WeChat drops the connection after 5 s and retries three times (§7b.2).
OA_RETRY_S: tuple[int, ...] = (5, 5, 5)

# A transport POSTs and returns the status code, or (status, body) when the answer's body matters (an
# official account's passive reply).
Transport = Callable[[str, bytes, dict[str, str], float], "int | tuple[int, bytes]"]


def requests_transport(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    """POST with ``requests`` (so tests can intercept it with ``responses``); the status and the body."""
    response = requests.post(url, data=body, headers=headers, timeout=timeout)
    return response.status_code, response.content


@dataclass
class Attempt:
    kind: str  # "delivery" | "duplicate" | "probe"
    at: str
    status: int | None
    error: str | None
    ok: bool

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "at": self.at, "status": self.status, "error": self.error, "ok": self.ok}


@dataclass
class Notification:
    """One logical notification and every HTTP attempt made for it."""

    id: str
    channel: str  # "v3" | "oa"
    event_type: str
    url: str
    owner: str  # mchid or appid
    resource: dict[str, Any]
    body: bytes
    schedule: tuple[int, ...]
    prepare: Callable[[bool], tuple[str, dict[str, str]]] = field(repr=False)
    attempts: list[Attempt] = field(default_factory=list)
    state: str = "pending"  # pending | delivered | failed
    retries_used: int = 0
    last_headers: dict[str, str] = field(default_factory=dict)
    last_url: str = ""
    next_due: float | None = None
    reply: str | None = None  # an official account's passive reply, as the follower sees it

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel": self.channel,
            "event_type": self.event_type,
            "url": self.url,
            "owner": self.owner,
            "state": self.state,
            "resource": self.resource,
            "body": self.body.decode(),
            "last_url": self.last_url,
            "reply": self.reply,
            "last_headers": self.last_headers,
            "attempts": [a.as_dict() for a in self.attempts],
            "next_due": rfc3339(self.next_due) if self.next_due is not None else None,
        }


class Notifier:
    """Queue, sign, deliver and retry notifications."""

    def __init__(self, world: World, transport: Transport | None = None) -> None:
        self._world = world
        self._transport = transport or requests_transport
        self._log: list[Notification] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------ enqueue

    def v3(
        self,
        merchant: Merchant,
        url: str | None,
        *,
        event_type: str,
        summary: str,
        original_type: str,
        associated_data: str,
        resource: dict[str, Any],
    ) -> Notification | None:
        """Queue a v3 envelope (§3.10) with an AEAD-encrypted resource, due now. Caller holds the lock."""
        if not url:
            return None
        world = self._world
        nonce = world.rng.alnum(12)
        note_id = "-".join(world.rng.hex(n) for n in (8, 4, 4, 4, 12)).lower()
        plaintext = json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode()
        envelope = {
            "id": note_id,
            "create_time": rfc3339(world.clock.now()),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": {
                "original_type": original_type,
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": crypto.aead_encrypt(merchant.apiv3_key, nonce, associated_data, plaintext),
                "associated_data": associated_data,
                "nonce": nonce,
            },
        }
        body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()

        def prepare(probe: bool) -> tuple[str, dict[str, str]]:
            headers = world.v3_signature_headers(merchant, body, for_notification=True)
            headers["Content-Type"] = "application/json"
            if probe:
                # Signature probes never verify; a correct merchant answers 4xx/5xx (§3.3 rule 3).
                headers["Wechatpay-Signature"] = crypto.PROBE_PREFIX + world.rng.alnum(32)
            return url, headers

        schedule = COUPON_RETRY_S if event_type == "COUPON.USE" else V3_RETRY_S
        note = Notification(note_id, "v3", event_type, url, merchant.mchid, resource, body, schedule, prepare)
        self._add(note, probe=merchant.probe_notifications)
        return note

    def oa_event(self, app: App, fields: dict[str, str | int]) -> Notification | None:
        """Queue an official-account event push (plain or safe mode, §7b.2–§7b.3). Caller holds the lock."""
        if not app.server_url:
            return None
        world = self._world
        inner = _xml(fields)
        body = inner
        if app.safe_mode:
            encrypt = crypto.wx_encrypt(app.encoding_aes_key, app.appid, inner, world.rng.bytes(16))
            outer = dict(fields) if app.compatible_mode else {"ToUserName": str(fields["ToUserName"])}
            body = _xml({**outer, "Encrypt": encrypt})
        else:
            encrypt = ""
        base_url = app.server_url

        def prepare(probe: bool) -> tuple[str, dict[str, str]]:
            ts = str(int(world.clock.wall()))
            nonce = world.rng.digits(10)
            query = {
                "signature": crypto.sha1_signature(app.token, ts, nonce),
                "timestamp": ts,
                "nonce": nonce,
                "openid": str(fields["FromUserName"]),
            }
            if app.safe_mode:
                query["encrypt_type"] = "aes"
                query["msg_signature"] = crypto.sha1_signature(app.token, ts, nonce, encrypt)
            sep = "&" if "?" in base_url else "?"
            qs = "&".join(f"{k}={v}" for k, v in query.items())
            return f"{base_url}{sep}{qs}", {"Content-Type": "text/xml"}

        note = Notification(
            "oa-" + world.rng.hex(16).lower(),
            "oa",
            str(fields.get("Event", fields.get("MsgType", ""))),
            base_url,
            app.appid,
            {k: v for k, v in fields.items()},
            body,
            OA_RETRY_S,
            prepare,
        )
        self._add(note, probe=False)
        return note

    def _add(self, note: Notification, *, probe: bool) -> None:
        world = self._world
        with self._lock:
            self._log.append(note)
        now = world.clock.now()
        if probe:
            world.scheduler.at(now, lambda: self._attempt(note, "probe"), f"probe {note.id}")
        note.next_due = now
        world.scheduler.at(now, lambda: self._attempt(note, "delivery"), f"notify {note.id}")

    # ------------------------------------------------------------ deliver

    def _attempt(self, note: Notification, kind: str) -> None:
        world = self._world
        with world.lock:
            url, headers = note.prepare(kind == "probe")
            at = rfc3339(world.clock.now())
        status: int | None = None
        error: str | None = None
        answer = b""
        try:
            sent = self._transport(url, note.body, headers, world.config.notify_timeout_s)
            status, answer = sent if isinstance(sent, tuple) else (sent, b"")
        except Exception as exc:  # any transport failure counts as "no success answer" (§3.10)
            error = f"{type(exc).__name__}: {exc}"
        ok = status in (200, 204)
        if ok and note.channel == "oa":
            # What the follower is shown: the passive reply, which must open with the account's key and
            # carry a valid MsgSignature in safe mode; an invalid reply is no answer (WeChat retries).
            with world.lock:
                note.reply, error = oa_reply(world, note.owner, answer, url)
            ok = error is None
        with world.lock:
            note.attempts.append(Attempt(kind, at, status, error, ok))
            note.last_headers = headers
            note.last_url = url
            if kind != "delivery":
                return
            if ok:
                note.state = "delivered"
                note.next_due = None
                merchant = world.state.merchants.get(note.owner)
                if merchant is not None and merchant.duplicate_notifications:
                    # WeChat may re-send over another path ~1 s later (§3.10); merchants must be idempotent.
                    world.after(1.0, lambda: self._attempt(note, "duplicate"), f"duplicate {note.id}")
                return
            if note.retries_used >= len(note.schedule):
                note.state = "failed"
                note.next_due = None
                return
            delay = note.schedule[note.retries_used]
            note.retries_used += 1
            note.next_due = world.after(delay, lambda: self._attempt(note, "delivery"), f"retry {note.id}")

    # ------------------------------------------------------------ views

    def log(self) -> list[Notification]:
        with self._lock:
            return list(self._log)

    def get(self, note_id: str) -> Notification | None:
        with self._lock:
            return next((n for n in self._log if n.id == note_id), None)


def _xml(fields: dict[str, Any]) -> bytes:
    parts = ["<xml>"]
    for key, value in fields.items():
        if isinstance(value, int):
            parts.append(f"<{key}>{value}</{key}>")
        else:
            parts.append(f"<{key}><![CDATA[{value}]]></{key}>")
    parts.append("</xml>")
    return "".join(parts).encode()


def oa_reply(world: World, appid: str, body: bytes, url: str) -> tuple[str | None, str | None]:
    """(the reply shown to the follower or None for "success" / nothing, an error if the reply is invalid).

    In safe mode (the push's URL says ``encrypt_type=aes``) the reply must be the encrypted envelope: its
    ``MsgSignature`` over token, TimeStamp, Nonce and Encrypt, the payload for this appid."""
    text = body.decode("utf-8", "replace").strip()
    if text in ("", "success"):
        return None, None
    app = world.state.apps.get(appid)
    if app is None or "encrypt_type=aes" not in url:
        return text, None
    fields = {name: _element(text, name) for name in ("Encrypt", "MsgSignature", "TimeStamp", "Nonce")}
    if not all(fields.values()):
        return None, "reply is not an encrypted envelope"
    expected = crypto.sha1_signature(app.token, fields["TimeStamp"], fields["Nonce"], fields["Encrypt"])
    if expected != fields["MsgSignature"]:
        return None, "reply MsgSignature does not match"
    try:
        message, reply_appid = crypto.wx_decrypt(app.encoding_aes_key, fields["Encrypt"])
    except (ValueError, struct.error, UnicodeDecodeError):
        return None, "reply does not decrypt"
    if reply_appid != app.appid:
        return None, "reply is for another appid"
    return message.decode("utf-8"), None


def _element(text: str, name: str) -> str:
    match = re.search(rf"<{name}>(?:<!\[CDATA\[(.*?)\]\]>|([^<]*))</{name}>", text, re.S)
    return (match.group(1) or match.group(2) or "") if match else ""
