"""Pay API v3 transport: request signature verification, signed responses, faults, idempotency (§3.2–§3.4)."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any

from flask import Request, Response, request

from wechat.sandbox import crypto
from wechat.sandbox.faults import V3_STATUS, Fault
from wechat.sandbox.state import IdemEntry, Merchant
from wechat.sandbox.world import World, current_world

TIMEOUT_HEADER = "X-Sandbox-Fault"

V3Result = tuple[int, Any]
V3Handler = Callable[..., V3Result]


class V3Error(Exception):
    """A WeChat Pay v3 error reply: HTTP status + ``{"code","message","detail"?}``."""

    def __init__(self, status: int, code: str, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            out["detail"] = self.detail
        return out


def param_error(field: str, issue: str | None = None) -> V3Error:
    """400 PARAM_ERROR naming the field in ``detail``; without ``issue`` it reads as a missing field."""
    message = issue or f"输入源“/body/{field}”映射到字段“{field}”必填性规则校验失败，此字段为必填项"
    return V3Error(
        400, "PARAM_ERROR", message, {"field": field, "location": "body", "issue": issue or "missing"}
    )


def require(body: dict[str, Any], *fields: str) -> None:
    """Raise PARAM_ERROR for the first missing dotted field (``amount.total``)."""
    for dotted in fields:
        node: Any = body
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None or node == "":
            raise param_error(dotted)


def int_field(body: dict[str, Any], dotted: str) -> int:
    """A required integer-fen field (booleans and floats are refused: money is integer fen)."""
    node: Any = body
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, int) or isinstance(node, bool):
        raise param_error(dotted, f"{dotted} must be an integer number of fen")
    return node


def canonical_url(req: Request) -> str:
    """Path + query exactly as sent on the wire (the signed CANONICAL_URL line, §3.2)."""
    raw = req.environ.get("RAW_URI") or req.environ.get("REQUEST_URI")
    path = raw.split("?", 1)[0] if raw else req.path
    query = req.environ.get("QUERY_STRING", "")
    return f"{path}?{query}" if query else path


def authenticate(world: World, req: Request) -> Merchant:
    """Verify ``Authorization`` against the registered merchant key; raise 401 SIGN_ERROR otherwise."""
    header = req.headers.get("Authorization", "")
    auth = crypto.parse_authorization(header)
    url = canonical_url(req)
    if auth is None:
        raise V3Error(
            401,
            "SIGN_ERROR",
            "Http头Authorization值格式错误，请参考《微信支付商户REST API签名规则》",
            {"field": "authorization", "location": "header", "issue": "malformed"},
        )
    merchant = world.state.merchants.get(auth.mchid)
    if merchant is None:
        raise V3Error(400, "MCH_NOT_EXISTS", "商户号不存在")
    body = req.get_data()
    message = crypto.request_message(req.method, url, auth.timestamp, auth.nonce_str, body)
    sign_info = {
        "method": req.method,
        "url": url,
        "sign_message_length": len(message),
        "truncated_sign_message": message[:256].decode(errors="replace"),
    }
    if auth.serial_no.upper() != merchant.merchant_serial.upper():
        raise V3Error(
            401,
            "SIGN_ERROR",
            "商户证书序列号有误。请使用签名私钥匹配的证书序列号",
            {
                "field": "serial_no",
                "location": "authorization",
                "detail": {"issue": "serial_no not registered"},
                "sign_information": sign_info,
            },
        )
    try:
        skew = abs(world.clock.wall() - int(auth.timestamp))
    except ValueError:
        skew = float("inf")
    if skew > world.config.request_window_s:
        raise V3Error(
            401,
            "SIGN_ERROR",
            "请求的时间戳已过期或超前，请检查系统时间",
            {
                "field": "timestamp",
                "location": "authorization",
                "detail": {"issue": f"timestamp outside ±{world.config.request_window_s}s"},
                "sign_information": sign_info,
            },
        )
    if not crypto.rsa_verify(merchant.merchant_public_key, message, auth.signature):
        raise V3Error(
            401,
            "SIGN_ERROR",
            "错误的签名，验签失败",
            {
                "field": "signature",
                "location": "authorization",
                "detail": {"issue": "sign not match"},
                "sign_information": sign_info,
            },
        )
    return merchant


def json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def signed_response(
    world: World, merchant: Merchant | None, status: int, body: bytes, serial_hint: str
) -> Response:
    """A v3 reply with Wechatpay-* headers (every 2xx must be signed, §3.3 rule 2)."""
    resp = Response(body, status=status)
    if body:
        resp.headers["Content-Type"] = "application/json; charset=utf-8"
    else:
        resp.headers.pop("Content-Type", None)
    if merchant is not None:
        with world.lock:
            resp.headers.update(world.v3_signature_headers(merchant, body, serial_hint=serial_hint))
    return resp


def error_response(world: World, merchant: Merchant | None, err: V3Error, serial_hint: str) -> Response:
    return signed_response(world, merchant, err.status, json_bytes(err.payload()), serial_hint)


def fault_response(world: World, merchant: Merchant, fault: Fault, serial_hint: str) -> Response:
    """Serve a fault reply (see ``faults`` for the modes)."""
    if fault.mode == "timeout":
        if world.config.real_sleep:
            time.sleep(fault.delay_s)
        resp = Response(b"", status=504)
        resp.headers[TIMEOUT_HEADER] = "timeout"
        return resp
    if fault.mode == "malformed":
        return signed_response(world, merchant, 200, b'{"code":"SUCC', serial_hint)
    code = fault.code or "SYSTEM_ERROR"
    status = fault.status or V3_STATUS.get(code, 500)
    err = V3Error(status, code, fault.message or "系统错误")
    return error_response(world, merchant, err, serial_hint)


def v3_endpoint(api: str) -> Callable[[V3Handler], Callable[..., Response]]:
    """Wrap a handler ``fn(world, merchant, body, **path_args) -> (status, payload)`` with the v3 transport.

    Order: verify signature → consume a fault (before or after the handler) → run under the world lock →
    sign the reply. Payload ``None`` means an empty body (204).
    """

    def deco(fn: V3Handler) -> Callable[..., Response]:
        @functools.wraps(fn)
        def view(**kwargs: Any) -> Response:
            world = current_world()
            serial_hint = request.headers.get("Wechatpay-Serial", "")
            merchant: Merchant | None = None
            try:
                with world.lock:
                    merchant = authenticate(world, request)
            except V3Error as err:
                return error_response(world, merchant, err, serial_hint)
            fault = world.faults.take(api, merchant.mchid)
            if fault is not None and not fault.commits:
                return fault_response(world, merchant, fault, serial_hint)
            try:
                raw = request.get_data()
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError as exc:
                    raise V3Error(400, "PARAM_ERROR", "请求体不是合法的JSON") from exc
                if not isinstance(body, dict):
                    raise V3Error(400, "PARAM_ERROR", "请求体必须是JSON对象")
                with world.lock:
                    status, payload = fn(world, merchant, body, **kwargs)
                resp = signed_response(
                    world, merchant, status, b"" if payload is None else json_bytes(payload), serial_hint
                )
            except V3Error as err:
                resp = error_response(world, merchant, err, serial_hint)
            if fault is not None:
                return fault_response(world, merchant, fault, serial_hint)
            return resp

        return view

    return deco


def fingerprint(body: Any) -> str:
    """Order-insensitive fingerprint of request parameters for idempotency comparison."""
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def idempotent(
    world: World,
    mchid: str,
    api: str,
    key: str,
    body: Any,
    conflict: V3Error,
    run: Callable[[], V3Result],
    replay: Callable[[], V3Result] | None = None,
) -> V3Result:
    """Same key + same body → replay (the first reply, or ``replay()``'s current view); same key + different
    body → ``conflict`` (§9 item 4)."""
    slot = (mchid, api, key)
    entry = world.state.idempotency.get(slot)
    fp = fingerprint(body)
    if entry is not None:
        if entry.fingerprint != fp:
            raise conflict
        return replay() if replay is not None else (entry.status, entry.payload)
    status, payload = run()
    if 200 <= status < 300:
        world.state.idempotency[slot] = IdemEntry(fp, status, payload)
    return status, payload
