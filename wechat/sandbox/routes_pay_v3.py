"""Pay v3 HTTP surface: certificates, JSAPI orders, refunds, trade bills (protocol doc §3, §8)."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, request

from wechat.sandbox import crypto
from wechat.sandbox.clock import cst_format, parse_rfc3339, rfc3339
from wechat.sandbox.pay import (
    OUT_REFUND_NO,
    OUT_TRADE_NO,
    build_trade_bill,
    create_refund,
    find_order,
    gzip_bytes,
    render_refund,
    render_transaction,
)
from wechat.sandbox.state import Merchant, Order, move
from wechat.sandbox.v3 import (
    V3Error,
    V3Result,
    authenticate,
    error_response,
    fault_response,
    idempotent,
    int_field,
    param_error,
    require,
    v3_endpoint,
)
from wechat.sandbox.world import World, current_world

bp = Blueprint("sandbox_pay_v3", __name__)

BILL_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _check_binding(merchant: Merchant, body: dict[str, Any]) -> None:
    if body.get("mchid") != merchant.mchid:
        raise V3Error(
            400,
            "PARAM_ERROR",
            "mchid与请求头中的商户号不一致",
            {"field": "mchid", "location": "body", "issue": "mchid mismatch"},
        )
    if body.get("appid") not in merchant.appids:
        raise V3Error(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")


def _check_query_mchid(merchant: Merchant) -> None:
    if request.args.get("mchid") != merchant.mchid:
        raise V3Error(
            400,
            "PARAM_ERROR",
            "query 参数 mchid 缺失或与请求头不一致",
            {"field": "mchid", "location": "query", "issue": "mchid mismatch"},
        )


@bp.get("/v3/certificates")
@v3_endpoint("v3.certificates")
def certificates(world: World, merchant: Merchant, body: dict[str, Any]) -> V3Result:
    """Platform certificates, AEAD-encrypted with the APIv3 key (§3.6)."""
    if not merchant.platform_certificates:
        raise V3Error(
            404, "RESOURCE_NOT_EXISTS", "无可用的平台证书，请在商户平台-API安全申请使用微信支付公钥"
        )
    nonce = world.rng.alnum(12)
    return 200, {
        "data": [
            {
                "serial_no": merchant.platform_serial,
                "effective_time": rfc3339(merchant.platform_cert_not_before),
                "expire_time": rfc3339(merchant.platform_cert_not_after),
                "encrypt_certificate": {
                    "algorithm": "AEAD_AES_256_GCM",
                    "nonce": nonce,
                    "associated_data": "certificate",
                    "ciphertext": crypto.aead_encrypt(
                        merchant.apiv3_key, nonce, "certificate", merchant.platform_cert_pem.encode()
                    ),
                },
            }
        ]
    }


@bp.post("/v3/pay/transactions/jsapi")
@v3_endpoint("v3.jsapi")
def jsapi(world: World, merchant: Merchant, body: dict[str, Any]) -> V3Result:
    """JSAPI / mini-program prepay (§3.7)."""
    require(
        body, "appid", "mchid", "description", "out_trade_no", "notify_url", "amount.total", "payer.openid"
    )
    total = int_field(body, "amount.total")
    _check_binding(merchant, body)
    out_trade_no = str(body["out_trade_no"])
    if not OUT_TRADE_NO.match(out_trade_no):
        raise param_error("out_trade_no", "out_trade_no must be 6-32 of [0-9a-zA-Z_-*]")
    if total <= 0:
        raise param_error("amount.total", "amount.total must be > 0 fen")
    if "?" in str(body["notify_url"]):
        raise param_error("notify_url", "notify_url must not carry a query string")
    openid = body["payer"]["openid"]
    if world.state.user_by_openid(body["appid"], openid) is None:
        raise V3Error(500, "OPENID_MISMATCH", "openid和appid不匹配")

    def current() -> V3Result:
        order = world.state.orders[(merchant.mchid, out_trade_no)]
        if order.status in ("SUCCESS", "REFUND"):
            raise V3Error(400, "ORDERPAID", "该订单已支付")
        if order.status == "CLOSED":
            raise V3Error(400, "ORDER_CLOSED", "该订单已关闭")
        return 200, {"prepay_id": order.prepay_id}

    def create() -> V3Result:
        if (merchant.mchid, out_trade_no) in world.state.orders:
            return current()
        now = world.clock.now()
        expires_at = now + world.config.prepay_ttl_s
        if body.get("time_expire"):
            try:
                expires_at = parse_rfc3339(str(body["time_expire"]))
            except ValueError as exc:
                raise param_error("time_expire", "time_expire must be RFC3339") from exc
        order = Order(
            mchid=merchant.mchid,
            appid=body["appid"],
            out_trade_no=out_trade_no,
            description=str(body["description"]),
            total=total,
            openid=openid,
            notify_url=str(body["notify_url"]),
            attach=str(body.get("attach", "")),
            prepay_id="wx" + cst_format(now, "%d%H%M%S") + world.rng.hex(26).lower(),
            created_at=now,
            expires_at=expires_at,
        )
        world.state.orders[(merchant.mchid, out_trade_no)] = order
        return 200, {"prepay_id": order.prepay_id}

    conflict = V3Error(403, "OUT_TRADE_NO_USED", "商户订单号重复，请核实商户订单号是否重复提交")
    return idempotent(world, merchant.mchid, "order", out_trade_no, body, conflict, create, current)


@bp.get("/v3/pay/transactions/out-trade-no/<out_trade_no>")
@v3_endpoint("v3.query")
def query_by_out_trade_no(
    world: World, merchant: Merchant, body: dict[str, Any], out_trade_no: str
) -> V3Result:
    """Order query by merchant order number (§3.9)."""
    _check_query_mchid(merchant)
    order = find_order(world, merchant.mchid, out_trade_no)
    if order is None:
        raise V3Error(404, "ORDER_NOT_EXIST", "订单不存在")
    return 200, render_transaction(world, order)


@bp.get("/v3/pay/transactions/id/<transaction_id>")
@v3_endpoint("v3.query")
def query_by_id(world: World, merchant: Merchant, body: dict[str, Any], transaction_id: str) -> V3Result:
    """Order query by WeChat transaction id; unpaid orders have none (§3.9)."""
    _check_query_mchid(merchant)
    for order in world.state.orders.values():
        if order.mchid == merchant.mchid and order.transaction_id == transaction_id:
            return 200, render_transaction(world, order)
    raise V3Error(404, "ORDER_NOT_EXIST", "订单不存在")


@bp.post("/v3/pay/transactions/out-trade-no/<out_trade_no>/close")
@v3_endpoint("v3.close")
def close(world: World, merchant: Merchant, body: dict[str, Any], out_trade_no: str) -> V3Result:
    """Close an unpaid order → 204. Like production, an unknown number also gets 204 (§3.9)."""
    require(body, "mchid")
    if body["mchid"] != merchant.mchid:
        raise V3Error(400, "PARAM_ERROR", "mchid与请求头中的商户号不一致")
    order = find_order(world, merchant.mchid, out_trade_no)
    if order is not None:
        if order.status in ("SUCCESS", "REFUND"):
            raise V3Error(400, "ORDERPAID", "订单已支付，不能关闭")
        if order.status in ("NOTPAY", "PAYERROR"):
            move("order", order, "CLOSED")
    return 204, None


@bp.post("/v3/refund/domestic/refunds")
@v3_endpoint("v3.refund")
def refund(world: World, merchant: Merchant, body: dict[str, Any]) -> V3Result:
    """Refund application (§3.11); 200 means accepted, status PROCESSING."""
    require(body, "out_refund_no", "amount.refund", "amount.total", "amount.currency")
    int_field(body, "amount.refund")
    int_field(body, "amount.total")
    out_refund_no = str(body["out_refund_no"])
    if not OUT_REFUND_NO.match(out_refund_no):
        raise param_error("out_refund_no", "out_refund_no must be 1-64 of [0-9A-Za-z_-|*@]")
    if not body.get("transaction_id") and not body.get("out_trade_no"):
        raise param_error("out_trade_no", "transaction_id or out_trade_no is required")

    def create() -> V3Result:
        order = None
        if body.get("out_trade_no"):
            order = find_order(world, merchant.mchid, str(body["out_trade_no"]))
        else:
            order = next(
                (
                    o
                    for o in world.state.orders.values()
                    if o.mchid == merchant.mchid and o.transaction_id == body["transaction_id"]
                ),
                None,
            )
        if order is None:
            raise V3Error(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        return 200, render_refund(create_refund(world, merchant, body, order))

    def current() -> V3Result:
        return 200, render_refund(world.state.refunds[(merchant.mchid, out_refund_no)])

    # Same out_refund_no with other parameters: exact production code UNVERIFIED (§10) — INVALID_REQUEST here.
    conflict = V3Error(400, "INVALID_REQUEST", "同一退款单号的请求参数与首次请求不一致")
    return idempotent(world, merchant.mchid, "refund", out_refund_no, body, conflict, create, current)


@bp.get("/v3/refund/domestic/refunds/<out_refund_no>")
@v3_endpoint("v3.refund_query")
def refund_query(world: World, merchant: Merchant, body: dict[str, Any], out_refund_no: str) -> V3Result:
    """Refund query by out_refund_no (§3.11)."""
    found = world.state.refunds.get((merchant.mchid, out_refund_no))
    if found is None:
        raise V3Error(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
    return 200, render_refund(found)


@bp.get("/v3/bill/tradebill")
@v3_endpoint("v3.tradebill")
def tradebill(world: World, merchant: Merchant, body: dict[str, Any]) -> V3Result:
    """Apply for a trade bill: returns hash and a 5-minute download URL (§8)."""
    bill_date = request.args.get("bill_date", "")
    bill_type = request.args.get("bill_type", "ALL")
    tar_type = request.args.get("tar_type", "")
    if not BILL_DATE.match(bill_date):
        raise V3Error(400, "PARAM_ERROR", "bill_date格式错误", {"field": "bill_date", "location": "query"})
    if bill_type not in ("ALL", "SUCCESS", "REFUND"):
        raise V3Error(400, "PARAM_ERROR", "bill_type取值错误", {"field": "bill_type", "location": "query"})
    if tar_type not in ("", "GZIP"):
        raise V3Error(400, "PARAM_ERROR", "tar_type取值错误", {"field": "tar_type", "location": "query"})
    if bill_date >= cst_format(world.clock.now(), "%Y-%m-%d"):
        raise V3Error(400, "NO_STATEMENT_EXIST", "账单尚未生成，请于次日10点后再下载")
    data = build_trade_bill(world, merchant.mchid, bill_date, bill_type)
    if data is None:
        raise V3Error(400, "NO_STATEMENT_EXIST", "该日期没有账单")
    token = world.rng.alnum(40)
    world.state.bill_tokens[token] = (
        merchant.mchid,
        bill_date,
        bill_type,
        tar_type == "GZIP",
        world.clock.now() + 300,
    )
    return 200, {
        "hash_type": "SHA1",
        "hash_value": crypto.sha1_hex(data),
        "download_url": f"{request.host_url}v3/billdownload/file?token={token}",
    }


@bp.get("/v3/billdownload/file")
def bill_download() -> Response:
    """The bill file itself: v3-authenticated request, UNSIGNED response body (§3.3 rule 4, §8)."""
    world = current_world()
    serial_hint = request.headers.get("Wechatpay-Serial", "")
    with world.lock:
        try:
            merchant = authenticate(world, request)
            entry = world.state.bill_tokens.get(request.args.get("token", ""))
            if entry is None or entry[0] != merchant.mchid or entry[4] < world.clock.now():
                raise V3Error(400, "INVALID_REQUEST", "下载链接已失效，请重新申请账单")
            fault = world.faults.take("v3.bill_download", merchant.mchid)
            if fault is not None:
                return fault_response(world, merchant, fault, serial_hint)
            data = build_trade_bill(world, merchant.mchid, entry[1], entry[2]) or b""
        except V3Error as err:
            return error_response(world, None, err, serial_hint)
    if entry[3]:
        data = gzip_bytes(data)
    return Response(data, status=200, headers={"Content-Type": "application/octet-stream"})
