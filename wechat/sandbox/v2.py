"""Pay v2 XML transport: parse, verify ``sign``, faults, signed replies (protocol doc §4)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any
from xml.etree.ElementTree import Element

from defusedxml import ElementTree
from flask import Response, request

from wechat.sandbox import crypto
from wechat.sandbox.state import Merchant
from wechat.sandbox.tls import client_certificate_cn
from wechat.sandbox.v3 import TIMEOUT_HEADER, fingerprint
from wechat.sandbox.world import World, current_world

V2Handler = Callable[[World, Merchant, dict[str, str]], dict[str, Any]]


class V2Error(Exception):
    """A business failure: ``result_code=FAIL`` with ``err_code`` (or ``return_code=FAIL`` if ``fatal``)."""

    def __init__(self, err_code: str, err_code_des: str, *, return_fail: bool = False) -> None:
        super().__init__(f"{err_code}: {err_code_des}")
        self.err_code = err_code
        self.err_code_des = err_code_des
        self.return_fail = return_fail


def parse_xml(raw: bytes) -> dict[str, str]:
    """Flat ``<xml><k>v</k>…</xml>`` → dict (defusedxml: no entities, no external DTDs)."""
    root: Element = ElementTree.fromstring(raw)
    if root.tag != "xml":
        raise ValueError("root element must be <xml>")
    return {child.tag: (child.text or "") for child in root}


def to_xml(fields: dict[str, Any]) -> bytes:
    """Serialise with CDATA for strings; nested lists of dicts become repeated child elements."""
    parts = ["<xml>"]
    for key, value in fields.items():
        parts.append(_element(key, value))
    parts.append("</xml>")
    return "".join(parts).encode()


def _element(key: str, value: Any) -> str:
    if isinstance(value, dict):
        inner = "".join(_element(k, v) for k, v in value.items())
        return f"<{key}>{inner}</{key}>"
    if isinstance(value, list):
        return f"<{key}>" + "".join(_element(k, v) for item in value for k, v in item.items()) + f"</{key}>"
    if isinstance(value, int):
        return f"<{key}>{value}</{key}>"
    return f"<{key}><![CDATA[{value}]]></{key}>"


def signed_xml(merchant: Merchant | None, fields: dict[str, Any], world: World) -> Response:
    """Add ``nonce_str`` and an MD5 ``sign`` (over scalar fields) with the v2 key."""
    if merchant is not None:
        with world.lock:  # the seeded RNG is shared; keep its sequence per request
            fields.setdefault("nonce_str", world.rng.alnum(32))
        scalars = {k: str(v) for k, v in fields.items() if not isinstance(v, (list, dict))}
        fields["sign"] = crypto.v2_sign(scalars, merchant.v2_key)
    return Response(to_xml(fields), status=200, headers={"Content-Type": "text/xml; charset=utf-8"})


def fail_xml(merchant: Merchant | None, err: V2Error, world: World, echo: dict[str, str]) -> Response:
    fields: dict[str, Any] = {
        "return_code": "FAIL" if err.return_fail else "SUCCESS",
        "return_msg": err.err_code_des if err.return_fail else "OK",
        "result_code": "FAIL",
        "err_code": err.err_code,
        "err_code_des": err.err_code_des,
    }
    fields.update(
        {k: v for k, v in echo.items() if k in ("mch_billno", "partner_trade_no", "mch_id", "mchid")}
    )
    # WeChat signs only return_code=SUCCESS replies (§4.1): a communication-level FAIL (SIGN_ERROR,
    # CA_ERROR, XML_ERROR) carries no sign, and signing it would make a caller holding a wrong key read
    # WeChat's refusal as a forged answer.
    return signed_xml(None if err.return_fail else merchant, fields, world)


def v2_endpoint(
    api: str, *, mch_field: str = "mch_id", required: tuple[str, ...] = ()
) -> Callable[[V2Handler], Callable[..., Response]]:
    """Wrap ``fn(world, merchant, params) -> result fields``: XML parsing, sign check, faults, signing."""

    def deco(fn: V2Handler) -> Callable[..., Response]:
        @functools.wraps(fn)
        def view() -> Response:
            world = current_world()
            try:
                params = parse_xml(request.get_data())
            except Exception:  # defusedxml raises several unrelated types; all mean "bad XML"
                return fail_xml(
                    None, V2Error("XML_ERROR", "输入xml参数格式错误", return_fail=True), world, {}
                )
            with world.lock:
                merchant = world.state.merchants.get(params.get(mch_field, ""))
            if merchant is None:
                return fail_xml(
                    None, V2Error("PARAM_ERROR", f"{mch_field}参数错误", return_fail=True), world, {}
                )
            if world.config.require_client_cert and (
                client_certificate_cn(request.environ.get("SSL_CLIENT_CERT")) != merchant.mchid
            ):
                # The TLS layer verified the chain; the certificate must also be this merchant's (§4.1).
                err = V2Error("CA_ERROR", "请求未携带商户API证书或证书与商户号不匹配", return_fail=True)
                return fail_xml(merchant, err, world, params)
            sign_type = params.get("sign_type", "MD5")
            if sign_type not in ("MD5", "HMAC-SHA256"):
                return fail_xml(merchant, V2Error("PARAM_ERROR", "sign_type参数错误"), world, params)
            if crypto.v2_sign(params, merchant.v2_key, sign_type) != params.get("sign", ""):
                return fail_xml(merchant, V2Error("SIGN_ERROR", "签名错误", return_fail=True), world, params)
            missing = [f for f in ("nonce_str", *required) if not params.get(f)]
            if missing:
                return fail_xml(merchant, V2Error("PARAM_ERROR", f"参数{missing[0]}缺失"), world, params)
            fault = world.faults.take(api, merchant.mchid)
            if fault is not None and not fault.commits:
                return _fault(world, merchant, fault, params)
            try:
                with world.lock:
                    result = fn(world, merchant, params)
                fields: dict[str, Any] = {
                    "return_code": "SUCCESS",
                    "return_msg": "OK",
                    "result_code": "SUCCESS",
                    "err_code": "SUCCESS",
                    "err_code_des": "处理成功",
                    **result,
                }
                resp = signed_xml(merchant, fields, world)
            except V2Error as err:
                resp = fail_xml(merchant, err, world, params)
            if fault is not None:
                return _fault(world, merchant, fault, params)
            return resp

        return view

    return deco


def _fault(world: World, merchant: Merchant, fault: Any, params: dict[str, str]) -> Response:
    if fault.mode == "timeout":
        if world.config.real_sleep:
            time.sleep(fault.delay_s)
        resp = Response(b"", status=504)
        resp.headers[TIMEOUT_HEADER] = "timeout"
        return resp
    if fault.mode == "malformed":
        return Response(b"<xml><return_code><![CDATA[SUCC", status=200, headers={"Content-Type": "text/xml"})
    code = fault.code or "SYSTEMERROR"
    return fail_xml(merchant, V2Error(code, fault.message or "系统繁忙，请稍后再试"), world, params)


def v2_fingerprint(params: dict[str, str]) -> str:
    """Request identity for idempotency: every parameter except the per-call nonce and signature."""
    return fingerprint({k: v for k, v in params.items() if k not in ("nonce_str", "sign", "sign_type")})
