"""WeChat Pay merchant coupons (商家券, "busifavor"): stocks with the merchant's own codes, the mini-program
``send-coupon`` plugin (APIv2 HMAC-SHA256 signature), ``COUPON.SEND``, use, return and deactivate.

A merchant without the product (the default: no new merchants since 2025-12-15) is answered ``NO_AUTH``.
Functions run under ``world.lock`` and raise ``V3Error``.
"""

from __future__ import annotations

import hmac
from typing import Any

from wechat.sandbox import crypto
from wechat.sandbox.clock import parse_rfc3339, rfc3339
from wechat.sandbox.state import BusifavorCoupon, BusifavorStock, Merchant, move
from wechat.sandbox.v3 import V3Error
from wechat.sandbox.world import World

NO_AUTH = V3Error(403, "NO_AUTH", "商户无权限，请开通商家券功能")


def require_product(merchant: Merchant) -> None:
    if not merchant.busifavor:
        raise NO_AUTH


def status_of(world: World, coupon: BusifavorCoupon) -> str:
    """SENDED past the stock's end reads EXPIRED (lazily, on the sandbox clock)."""
    stock = world.state.busifavor_stocks[coupon.stock_id]
    if coupon.status == "SENDED" and world.clock.now() > stock.available_end:
        move("busifavor_coupon", coupon, "EXPIRED")
    return coupon.status


def create_stock(world: World, merchant: Merchant, body: dict[str, Any]) -> BusifavorStock:
    rule = body.get("coupon_use_rule") or {}
    window = rule.get("coupon_available_time") or {}
    normal = rule.get("fixed_normal_coupon") or {}
    send = body.get("stock_send_rule") or {}
    try:
        begin = parse_rfc3339(window["available_begin_time"])
        end = parse_rfc3339(window["available_end_time"])
    except (KeyError, ValueError, TypeError) as exc:
        raise V3Error(400, "PARAM_ERROR", "coupon_available_time 必须为RFC3339") from exc
    amount, minimum, most = (
        normal.get("discount_amount"),
        normal.get("transaction_minimum", 0),
        send.get("max_coupons"),
    )
    if not all(type(v) is int and v >= 0 for v in (amount, minimum, most)) or not amount or not most:
        raise V3Error(400, "PARAM_ERROR", "discount_amount/max_coupons 必须为正整数")
    mode = str(body.get("coupon_code_mode", "WECHATPAY_MODE"))
    if mode not in ("WECHATPAY_MODE", "MERCHANT_API", "MERCHANT_UPLOAD"):
        raise V3Error(400, "PARAM_ERROR", "coupon_code_mode 不合法")
    stock = BusifavorStock(
        stock_id="1212" + world.rng.digits(8),
        creator_mchid=merchant.mchid,
        name=str(body.get("stock_name", "")),
        discount_amount=amount,
        transaction_minimum=minimum,
        max_coupons=most,
        max_coupons_per_user=int(send.get("max_coupons_per_user", 1)),
        available_begin=begin,
        available_end=end,
        code_mode=mode,
        created_at=world.clock.now(),
    )
    world.state.busifavor_stocks[stock.stock_id] = stock
    return stock


def render_coupon(world: World, coupon: BusifavorCoupon) -> dict[str, Any]:
    stock = world.state.busifavor_stocks[coupon.stock_id]
    return {
        "belong_merchant": stock.creator_mchid,
        "stock_name": stock.name,
        "stock_id": stock.stock_id,
        "coupon_code": coupon.coupon_code,
        "coupon_state": status_of(world, coupon),
        "available_start_time": rfc3339(stock.available_begin),
        "expire_time": rfc3339(stock.available_end),
        "receive_time": rfc3339(coupon.created_at),
        "send_request_no": coupon.out_request_no,
        "use_request_no": coupon.use_request_no or None,
        "coupon_use_rule": {
            "fixed_normal_coupon": {
                "discount_amount": stock.discount_amount,
                "transaction_minimum": stock.transaction_minimum,
            }
        },
    }


def plugin_sign(params: dict[str, Any], v2_key: str) -> str:
    """The send-coupon plugin's ``sign`` (APIv2 HMAC-SHA256 over the flattened, sorted parameters)."""
    flat = {"send_coupon_merchant": str(params.get("send_coupon_merchant", ""))}
    for i, item in enumerate(params.get("send_coupon_params") or []):
        if not isinstance(item, dict):
            raise V3Error(400, "PARAM_ERROR", "send_coupon_params 不合法")
        for name in ("stock_id", "out_request_no", "coupon_code"):
            if item.get(name):
                flat[f"{name}{i}"] = str(item[name])
    return crypto.v2_sign(flat, v2_key, "HMAC-SHA256")


def plugin_send(
    world: World, merchant: Merchant, params: dict[str, Any], appid: str, openid: str
) -> list[dict[str, Any]]:
    """What the plugin does when the user taps: check the signature, then claim each coupon for the user and
    push ``COUPON.SEND`` (idempotent per ``out_request_no``). Forged → SIGN_ERROR, nothing claimed."""
    items = params.get("send_coupon_params")
    if not isinstance(items, list) or not items or not isinstance(params.get("sign"), str):
        raise V3Error(400, "PARAM_ERROR", "send_coupon_params/sign 缺失")
    if params.get("send_coupon_merchant") != merchant.mchid:
        raise V3Error(400, "PARAM_ERROR", "send_coupon_merchant 与商户不一致")
    if not hmac.compare_digest(plugin_sign(params, merchant.v2_key), params["sign"]):
        raise V3Error(400, "SIGN_ERROR", "签名错误")
    require_product(merchant)
    return [
        _claim(world, merchant, item, appid, openid, "BUSICOUPON_SEND_CHANNEL_MINIAPP")
        for item in items
        if isinstance(item, dict)
    ]


def h5_send(world: World, merchant: Merchant, query: dict[str, str]) -> dict[str, Any]:
    """The user opens the merchant's H5 issuance link in WeChat: its ``sign`` (APIv2 HMAC-SHA256 over
    stock_id, out_request_no, send_coupon_merchant, open_id, coupon_code) is checked, then as the plugin."""
    fields = {
        k: query[k]
        for k in ("stock_id", "out_request_no", "send_coupon_merchant", "open_id", "coupon_code")
        if query.get(k)
    }
    if fields.get("send_coupon_merchant") != merchant.mchid:
        raise V3Error(400, "PARAM_ERROR", "send_coupon_merchant 与商户不一致")
    expected = crypto.v2_sign(fields, merchant.v2_key, "HMAC-SHA256")
    if not hmac.compare_digest(expected, str(query.get("sign", ""))):
        raise V3Error(400, "SIGN_ERROR", "签名错误")
    require_product(merchant)
    openid = fields.get("open_id", "")
    appid = next((a for a in merchant.appids if world.state.user_by_openid(a, openid) is not None), None)
    if appid is None:
        raise V3Error(400, "PARAM_ERROR", "open_id 不属于商户的应用")
    return _claim(world, merchant, fields, appid, openid, "BUSICOUPON_SEND_CHANNEL_H5")


def _claim(
    world: World, merchant: Merchant, item: dict[str, Any], appid: str, openid: str, channel: str
) -> dict[str, Any]:
    """Bind one code to the user and push COUPON.SEND (a replay of the same request is one claim)."""
    stock = world.state.busifavor_stocks.get(str(item.get("stock_id")))
    if stock is None or stock.creator_mchid != merchant.mchid:
        raise V3Error(400, "PARAM_ERROR", "批次不存在")
    code, request_no = str(item.get("coupon_code") or ""), str(item.get("out_request_no") or "")
    if stock.code_mode == "MERCHANT_API" and not code:
        raise V3Error(400, "PARAM_ERROR", "MERCHANT_API 模式必须传入 coupon_code")
    code = code or world.rng.digits(12)
    result = {
        "stock_id": stock.stock_id,
        "out_request_no": request_no,
        "coupon_code": code,
        "code": "SUCCESS",
    }
    existing = world.state.busifavor_coupons.get((stock.stock_id, code))
    if existing is not None:
        if existing.out_request_no != request_no or existing.openid != openid:
            raise V3Error(400, "INVALID_REQUEST", "券码已被使用")
        return result
    now = world.clock.now()
    if not stock.available_begin <= now <= stock.available_end:
        raise V3Error(400, "INVALID_REQUEST", "批次不在可用时间内")
    if stock.sent >= stock.max_coupons:
        raise V3Error(400, "INVALID_REQUEST", "批次已发完")
    coupon = BusifavorCoupon(code, stock.stock_id, openid, appid, request_no, now)
    world.state.busifavor_coupons[(stock.stock_id, code)] = coupon
    stock.sent += 1
    world.notifier.v3(
        merchant,
        merchant.busifavor_notify_url,
        event_type="COUPON.SEND",
        summary="商家券领券通知",
        original_type="busifavor",
        associated_data="busifavor",
        resource={
            "event_type": "EVENT_TYPE_BUSICOUPON_SEND",
            "coupon_code": code,
            "stock_id": stock.stock_id,
            "send_time": rfc3339(now),
            "openid": openid,
            "unionid": "",
            "send_channel": channel,
            "send_merchant": merchant.mchid,
            "attach_info": {},
        },
    )
    return result


def find_coupon(world: World, merchant: Merchant, body: dict[str, Any]) -> BusifavorCoupon:
    coupon = world.state.busifavor_coupons.get((str(body.get("stock_id")), str(body.get("coupon_code"))))
    stock = world.state.busifavor_stocks.get(str(body.get("stock_id")))
    if coupon is None or stock is None or stock.creator_mchid != merchant.mchid:
        raise V3Error(404, "RESOURCE_NOT_EXISTS", "券不存在")
    return coupon


def use(world: World, merchant: Merchant, body: dict[str, Any]) -> dict[str, Any]:
    coupon = find_coupon(world, merchant, body)
    if body.get("openid") != coupon.openid or body.get("appid") != coupon.appid:
        raise V3Error(400, "INVALID_REQUEST", "券不属于该用户")
    state = status_of(world, coupon)
    if state == "USED":
        raise V3Error(400, "INVALID_REQUEST", "券已核销")
    if state != "SENDED":
        raise V3Error(400, "INVALID_REQUEST", f"券状态为{state}，不可核销")
    move("busifavor_coupon", coupon, "USED")
    coupon.used_at = world.clock.now()
    coupon.use_request_no = str(body["use_request_no"])
    return {
        "stock_id": coupon.stock_id,
        "openid": coupon.openid,
        "wechatpay_use_time": rfc3339(coupon.used_at),
    }


def give_back(world: World, merchant: Merchant, body: dict[str, Any]) -> dict[str, Any]:
    coupon = find_coupon(world, merchant, body)
    if coupon.status != "USED":
        raise V3Error(400, "INVALID_REQUEST", f"券状态为{coupon.status}，不可退券")
    move("busifavor_coupon", coupon, "SENDED")
    coupon.used_at, coupon.use_request_no = None, ""
    return {"wechatpay_return_time": rfc3339(world.clock.now())}


def deactivate(world: World, merchant: Merchant, body: dict[str, Any]) -> dict[str, Any]:
    coupon = find_coupon(world, merchant, body)
    if status_of(world, coupon) != "SENDED":
        raise V3Error(400, "INVALID_REQUEST", f"券状态为{coupon.status}，不可失效")
    move("busifavor_coupon", coupon, "DEACTIVATED")
    return {"wechatpay_deactivate_time": rfc3339(world.clock.now())}
