"""Merchant coupons (商家券, busifavor) over Pay v3, and the sandbox's coupon admin: a merchant's product
switch, the user tapping the ``send-coupon`` plugin, the user's card pack."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from flask import Blueprint, Response, jsonify

from wechat.sandbox import busifavor
from wechat.sandbox.admin import AdminError, app_of, install_error_handlers, json_body, run, user_of
from wechat.sandbox.clock import rfc3339
from wechat.sandbox.marketing import render_coupon
from wechat.sandbox.state import Merchant
from wechat.sandbox.v3 import V3Error, V3Result, idempotent, require, v3_endpoint
from wechat.sandbox.world import World, current_world

bp = Blueprint("sandbox_coupons", __name__)
admin = Blueprint("sandbox_coupons_admin", __name__, url_prefix="/_sandbox")
install_error_handlers(admin)
_CONFLICT = V3Error(400, "INVALID_REQUEST", "商户单据号重复且请求参数不一致")


@bp.post("/v3/marketing/busifavor/stocks")
@v3_endpoint("v3.busifavor_stock_create")
def stock_create(world: World, merchant: Merchant, body: dict[str, Any]) -> V3Result:
    """Create a merchant-coupon stock; NO_AUTH without the product."""
    busifavor.require_product(merchant)
    require(body, "stock_name", "belong_merchant", "out_request_no", "coupon_use_rule", "stock_send_rule")
    if body["belong_merchant"] != merchant.mchid:
        raise V3Error(400, "PARAM_ERROR", "belong_merchant 与请求商户号不一致")

    def create() -> V3Result:
        stock = busifavor.create_stock(world, merchant, body)
        return 200, {"stock_id": stock.stock_id, "create_time": rfc3339(stock.created_at)}

    return idempotent(
        world, merchant.mchid, "busifavor_stock", str(body["out_request_no"]), body, _CONFLICT, create
    )


@bp.post("/v3/marketing/busifavor/coupons/use")
@v3_endpoint("v3.busifavor_use")
def coupon_use(world: World, merchant: Merchant, body: dict[str, Any]) -> V3Result:
    """核销 a claimed code, idempotent on use_request_no (the same request replays its answer)."""
    busifavor.require_product(merchant)
    require(body, "coupon_code", "stock_id", "appid", "use_time", "use_request_no", "openid")
    return idempotent(
        world,
        merchant.mchid,
        "busifavor_use",
        str(body["use_request_no"]),
        body,
        _CONFLICT,
        lambda: (200, busifavor.use(world, merchant, body)),
    )


@bp.post("/v3/marketing/busifavor/coupons/return")
@v3_endpoint("v3.busifavor_return")
def coupon_return(world: World, merchant: Merchant, body: dict[str, Any]) -> V3Result:
    """退券: a used code back to the user."""
    busifavor.require_product(merchant)
    require(body, "coupon_code", "stock_id", "return_request_no")
    return idempotent(
        world,
        merchant.mchid,
        "busifavor_return",
        str(body["return_request_no"]),
        body,
        _CONFLICT,
        lambda: (200, busifavor.give_back(world, merchant, body)),
    )


@bp.post("/v3/marketing/busifavor/coupons/deactivate")
@v3_endpoint("v3.busifavor_deactivate")
def coupon_deactivate(world: World, merchant: Merchant, body: dict[str, Any]) -> V3Result:
    """使券失效."""
    busifavor.require_product(merchant)
    require(body, "coupon_code", "stock_id", "deactivate_request_no", "deactivate_reason")
    return idempotent(
        world,
        merchant.mchid,
        "busifavor_deactivate",
        str(body["deactivate_request_no"]),
        body,
        _CONFLICT,
        lambda: (200, busifavor.deactivate(world, merchant, body)),
    )


@bp.get("/v3/marketing/busifavor/users/<openid>/coupons/<code>/appids/<appid>")
@v3_endpoint("v3.busifavor_query")
def coupon_query(
    world: World, merchant: Merchant, body: dict[str, Any], openid: str, code: str, appid: str
) -> V3Result:
    busifavor.require_product(merchant)
    for (_, found_code), coupon in world.state.busifavor_coupons.items():
        stock = world.state.busifavor_stocks[coupon.stock_id]
        if found_code == code and coupon.openid == openid and stock.creator_mchid == merchant.mchid:
            return 200, busifavor.render_coupon(world, coupon)
    raise V3Error(404, "RESOURCE_NOT_EXISTS", "券不存在")


@bp.post("/v3/marketing/busifavor/callbacks")
@v3_endpoint("v3.busifavor_callbacks")
def callbacks(world: World, merchant: Merchant, body: dict[str, Any]) -> V3Result:
    """Where COUPON.SEND goes."""
    busifavor.require_product(merchant)
    require(body, "notify_url")
    merchant.busifavor_notify_url = str(body["notify_url"])
    return 200, {
        "update_time": rfc3339(world.clock.now()),
        "notify_url": merchant.busifavor_notify_url,
        "mchid": merchant.mchid,
    }


# ---------------------------------------------------------------- admin


def _merchant(world: World, mchid: str) -> Merchant:
    merchant = world.state.merchants.get(mchid)
    if merchant is None:
        raise AdminError(404, "not_found", f"merchant {mchid} not found")
    return merchant


@admin.post("/merchants/<mchid>/busifavor")
def busifavor_switch(mchid: str) -> Response:
    """``{"enabled": true}`` gives the merchant merchant coupons (as a merchant connected before 2025-12-15)."""
    world = current_world()
    body = json_body()
    with world.lock:
        merchant = _merchant(world, mchid)
        merchant.busifavor = bool(body.get("enabled", True))
        return jsonify({"mchid": mchid, "busifavor": merchant.busifavor})


@admin.post("/busifavor/send-coupon")
@admin.post("/users/<uid>/send-coupon")
def plugin_send(uid: str | None = None) -> Response:
    """The user taps ``<send-coupon>`` in the mini-program ``appid`` with the merchant's signed parameters
    (``send_coupon_params``, ``send_coupon_merchant``, ``sign``): COUPON.SEND is pushed for each coupon."""
    world = current_world()
    body = json_body()

    def act() -> dict[str, Any]:
        user = user_of(world, str(uid or body.get("user_id", "")))
        app = app_of(world, body.get("appid"))
        merchant = _merchant(world, str(body.get("send_coupon_merchant", "")))
        openid = user.openids.get(app.appid)
        if openid is None:
            raise AdminError(
                422, "invalid_field", "the user has no openid under that app", {"field": "appid"}
            )
        return {"send_coupon_result": busifavor.plugin_send(world, merchant, body, app.appid, openid)}

    return jsonify(run(world, act, bool(body.get("deliver", True))))


@admin.post("/users/<uid>/open-h5-coupon")
def h5_coupon(uid: str) -> Response:
    """The user opens a merchant-coupon H5 link (``{"url": …}``) inside WeChat: COUPON.SEND is pushed."""
    world = current_world()
    body = json_body()

    def act() -> dict[str, Any]:
        user = user_of(world, uid)
        parts = urlsplit(str(body.get("url", "")))
        query = dict(parse_qsl(parts.query))
        merchant = _merchant(world, query.get("send_coupon_merchant", ""))
        if query.get("open_id") not in user.openids.values():
            raise AdminError(422, "invalid_field", "the link is for another user", {"field": "url"})
        return busifavor.h5_send(world, merchant, query)

    return jsonify(run(world, act, bool(body.get("deliver", True))))


@admin.get("/users/<uid>/card-pack")
def card_pack(uid: str) -> Response:
    """The user's card pack (卡包): their vouchers and merchant coupons, with WeChat's states."""
    world = current_world()
    with world.lock:
        user = user_of(world, uid)
        openids = set(user.openids.values())
        vouchers = [render_coupon(world, c) for c in world.state.coupons.values() if c.openid in openids]
        merchant_coupons = [
            busifavor.render_coupon(world, c)
            for c in world.state.busifavor_coupons.values()
            if c.openid in openids
        ]
    return jsonify({"vouchers": vouchers, "merchant_coupons": merchant_coupons})
