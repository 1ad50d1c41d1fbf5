"""Fault injection: the next N calls to an API fail in a chosen way (protocol doc §9 item 6).

Modes:
- ``error``: reply with the named error; the operation does NOT happen.
- ``accept_then_error``: the operation happens, then the reply is an error (default SYSTEM_ERROR) — the
  dangerous case for payouts: a client that switches idempotency key pays twice.
- ``timeout``: no reply within the client's timeout (server mode sleeps ``delay_s``; in-process the
  ``testing`` router raises ``requests.ReadTimeout``). ``after_commit``: did the operation happen?
- ``malformed``: a truncated body (``after_commit`` as for timeout).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

MODES = ("error", "accept_then_error", "timeout", "malformed")
# Server-mode "timeout" sleeps this long: past Hongli's default 10 s client timeout.
DEFAULT_TIMEOUT_DELAY_S = 15.0

# API names accepted by POST /_sandbox/faults.
APIS = (
    "v3.certificates",
    "v3.jsapi",
    "v3.query",
    "v3.close",
    "v3.refund",
    "v3.refund_query",
    "v3.tradebill",
    "v3.bill_download",
    "v3.transfer_bill",
    "v3.transfer_bill_query",
    "v3.transfer_bill_cancel",
    "v3.favor_stock_create",
    "v3.favor_stock_start",
    "v3.favor_send",
    "v3.favor_query",
    "v3.favor_callbacks",
    "v3.favor_stock_query",
    "v3.busifavor_stock_create",
    "v3.busifavor_use",
    "v3.busifavor_return",
    "v3.busifavor_deactivate",
    "v3.busifavor_query",
    "v3.busifavor_callbacks",
    "v2.sendredpack",
    "v2.sendgroupredpack",
    "v2.gethbinfo",
    "v2.transfers",
    "v2.gettransferinfo",
    "mp.jscode2session",
    "mp.token",
    "mp.stable_token",
    "mp.oauth_access_token",
    "mp.oauth_refresh_token",
    "mp.userinfo",
    "mp.getticket",
    "mp.card",
)

# Default HTTP status for v3 error codes (§3.4).
V3_STATUS = {
    "PARAM_ERROR": 400,
    "INVALID_REQUEST": 400,
    "APPID_MCHID_NOT_MATCH": 400,
    "MCH_NOT_EXISTS": 400,
    "ORDER_CLOSED": 400,
    "SIGN_ERROR": 401,
    "NO_AUTH": 403,
    "OUT_TRADE_NO_USED": 403,
    "RULE_LIMIT": 403,
    "TRADE_ERROR": 403,
    "ACCOUNT_ERROR": 403,
    "NOT_ENOUGH": 403,
    "ORDER_NOT_EXIST": 404,
    "RESOURCE_NOT_EXISTS": 404,
    "FREQUENCY_LIMITED": 429,
    "SYSTEM_ERROR": 500,
    "BANK_ERROR": 500,
    "OPENID_MISMATCH": 500,
    "SERVICE_UNAVAILABLE": 503,
}


@dataclass
class Fault:
    """One armed fault rule."""

    id: int
    api: str
    mode: str
    remaining: int
    code: str | None = None
    status: int | None = None
    message: str | None = None
    delay_s: float = DEFAULT_TIMEOUT_DELAY_S
    after_commit: bool = False
    mchid: str | None = None
    fired: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "api": self.api,
            "mode": self.mode,
            "remaining": self.remaining,
            "code": self.code,
            "status": self.status,
            "message": self.message,
            "delay_s": self.delay_s,
            "after_commit": self.after_commit,
            "mchid": self.mchid,
            "fired": self.fired,
        }

    @property
    def commits(self) -> bool:
        """Whether the operation takes effect before the fault is served."""
        return self.mode == "accept_then_error" or (
            self.mode in ("timeout", "malformed") and self.after_commit
        )


@dataclass
class FaultBook:
    """Armed faults, consumed first-in first-out per API."""

    _faults: list[Fault] = field(default_factory=list)
    _next_id: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def arm(
        self,
        api: str,
        mode: str,
        *,
        count: int = 1,
        code: str | None = None,
        status: int | None = None,
        message: str | None = None,
        delay_s: float = DEFAULT_TIMEOUT_DELAY_S,
        after_commit: bool = False,
        mchid: str | None = None,
    ) -> Fault:
        """Register a fault; raises ``ValueError`` naming the bad field."""
        if api not in APIS:
            raise ValueError(f"api: unknown API {api!r}; one of {', '.join(APIS)}")
        if mode not in MODES:
            raise ValueError(f"mode: unknown mode {mode!r}; one of {', '.join(MODES)}")
        if mode == "error" and not code:
            raise ValueError("code: required for mode 'error'")
        if count < 1:
            raise ValueError("count: must be >= 1")
        with self._lock:
            fault = Fault(
                self._next_id, api, mode, count, code, status, message, delay_s, after_commit, mchid
            )
            self._next_id += 1
            self._faults.append(fault)
            return fault

    def take(self, api: str, mchid: str | None = None) -> Fault | None:
        """Consume one shot of the first matching fault, if any."""
        with self._lock:
            for fault in self._faults:
                if fault.api == api and fault.remaining > 0 and fault.mchid in (None, mchid):
                    fault.remaining -= 1
                    fault.fired += 1
                    return fault
            return None

    def list(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
