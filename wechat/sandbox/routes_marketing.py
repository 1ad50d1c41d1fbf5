"""Pay v3 voucher (favor) HTTP surface (protocol doc §7a)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from wechat.sandbox.clock import rfc3339
from wechat.sandbox.marketing import create_stock, render_coupon, send_coupon
from wechat.sandbox.state import Merchant
from wechat.sandbox.v3 import V3Error, V3Result, idempotent, require, v3_endpoint
from wechat.sandbox.world import World

bp = Blueprint("sandbox_marketing", __name__)

# Same out_request_no with other parameters: production code UNVERIFIED (§7a.3) — INVALID_REQUEST here.
_CONFLICT = V3Error(400, "INVALID_REQUEST", "商户单据号重复且请求参数不一致")


@bp.post("/v3/marketing/favor/coupon-stocks")
@v3_endpoint("v3.favor_stock_create")
def stock_create(world: World, merchant: Merchant, body: dict[str, Any]) -> V3Result:
    """Create a voucher stock (§7a.1)."""
    require(
        body,
        "stock_name",
        "belong_merchant",
        "available_begin_time",
        "available_end_time",
        "stock_use_rule.max_coupons",
        "coupon_use_rule.fixed_normal_coupon.coupon_amount",
        "stock_type",
        "out_request_no",
    )
    if body["belong_merchant"] != merchant.mchid:
        raise V3Error(400, "PARAM_ERROR", "belong_merchant 与请求商户号不一致")

    def create() -> V3Result:
        stock = create_stock(world, merchant.mchid, body)
        return 200, {"stock_id": stock.stock_id, "create_time": rfc3339(stock.created_at)}

    return idempotent(
        world, merchant.mchid, "favor_stock", str(body["out_request_no"]), body, _CONFLICT, create
    )


def _stock_action(world: World, merchant: Merchant, body: dict[str, Any], stock_id: str, to: str) -> V3Result:
    require(body, "stock_creator_mchid")
    stock = world.state.stocks.get(stock_id)
    if (
        stock is None
        or stock.creator_mchid != body["stock_creator_mchid"]
        or stock.creator_mchid != merchant.mchid
    ):
        raise V3Error(404, "RESOURCE_NOT_EXISTS", "批次不存在")
    allowed = {"running": {"unactivated", "paused"}, "paused": {"running"}, "stoped": {"running", "paused"}}
    if stock.status not in allowed[to]:
        raise V3Error(400, "INVALID_REQUEST", f"批次状态为{stock.status}，不能执行该操作")
    stock.status = to
    key = {"running": "start_time", "paused": "pause_time", "stoped": "stop_time"}[to]
    return 200, {"stock_id": stock_id, key: rfc3339(world.clock.now())}


@bp.post("/v3/marketing/favor/stocks/<stock_id>/start")
@v3_endpoint("v3.favor_stock_start")
def stock_start(world: World, merchant: Merchant, body: dict[str, Any], stock_id: str) -> V3Result:
    """Activate a stock (§7a.2)."""
    return _stock_action(world, merchant, body, stock_id, "running")


@bp.post("/v3/marketing/favor/stocks/<stock_id>/pause")
@v3_endpoint("v3.favor_stock_start")
def stock_pause(world: World, merchant: Merchant, body: dict[str, Any], stock_id: str) -> V3Result:
    """Pause a running stock."""
    return _stock_action(world, merchant, body, stock_id, "paused")


@bp.post("/v3/marketing/favor/stocks/<stock_id>/restart")
@v3_endpoint("v3.favor_stock_start")
def stock_restart(world: World, merchant: Merchant, body: dict[str, Any], stock_id: str) -> V3Result:
    """Restart a paused stock."""
    return _stock_action(world, merchant, body, stock_id, "running")


@bp.post("/v3/marketing/favor/stocks/<stock_id>/stop")
@v3_endpoint("v3.favor_stock_start")
def stock_stop(world: World, merchant: Merchant, body: dict[str, Any], stock_id: str) -> V3Result:
    """Stop a stock for good (sent coupons stay usable until they expire)."""
    return _stock_action(world, merchant, body, stock_id, "stoped")


@bp.get("/v3/marketing/favor/stocks/<stock_id>")
@v3_endpoint("v3.favor_stock_query")
def stock_query(world: World, merchant: Merchant, body: dict[str, Any], stock_id: str) -> V3Result:
    """Stock detail: its state, size and how many were sent (§7a)."""
    stock = world.state.stocks.get(stock_id)
    if (
        stock is None
        or stock.creator_mchid != merchant.mchid
        or request.args.get("stock_creator_mchid") != merchant.mchid
    ):
        raise V3Error(404, "RESOURCE_NOT_EXISTS", "批次不存在")
    return 200, {
        "stock_id": stock.stock_id,
        "stock_creator_mchid": stock.creator_mchid,
        "stock_name": stock.name,
        "status": stock.status,
        "create_time": rfc3339(stock.created_at),
        "available_begin_time": rfc3339(stock.available_begin),
        "available_end_time": rfc3339(stock.available_end),
        "stock_use_rule": {
            "max_coupons": stock.max_coupons,
            "max_amount": stock.max_coupons * stock.coupon_amount,
            "max_coupons_per_user": stock.max_coupons_per_user,
            "fixed_normal_coupon": {
                "coupon_amount": stock.coupon_amount,
                "transaction_minimum": stock.transaction_minimum,
            },
        },
        "distributed_coupons": stock.sent,
        "no_cash": stock.no_cash,
        "stock_type": "NORMAL",
    }


@bp.post("/v3/marketing/favor/users/<openid>/coupons")
@v3_endpoint("v3.favor_send")
def coupon_send(world: World, merchant: Merchant, body: dict[str, Any], openid: str) -> V3Result:
    """Send a coupon to a user, idempotent on out_request_no (§7a.3)."""
    require(body, "stock_id", "out_request_no", "appid", "stock_creator_mchid")
    if body["appid"] not in merchant.appids:
        raise V3Error(400, "APPID_MCHID_NOT_MATCH", "appid与商户号未绑定")
    if world.state.user_by_openid(body["appid"], openid) is None:
        raise V3Error(400, "PARAM_ERROR", "openid与appid不匹配")
    if "coupon_value" in body or "coupon_minimum" in body:
        # Community staff: sending these for a normal stock is a PARAM_ERROR (§7a.3).
        raise V3Error(400, "PARAM_ERROR", "参数错误，请核对文档要求")
    stock = world.state.stocks.get(str(body["stock_id"]))
    if stock is None or stock.creator_mchid != body["stock_creator_mchid"]:
        raise V3Error(400, "PARAM_ERROR", "批次不存在或stock_creator_mchid错误")

    def create() -> V3Result:
        assert stock is not None
        return 200, {"coupon_id": send_coupon(world, stock, body["appid"], openid).coupon_id}

    return idempotent(
        world, merchant.mchid, "favor_send", str(body["out_request_no"]), body, _CONFLICT, create
    )


@bp.get("/v3/marketing/favor/users/<openid>/coupons/<coupon_id>")
@v3_endpoint("v3.favor_query")
def coupon_query(
    world: World, merchant: Merchant, body: dict[str, Any], openid: str, coupon_id: str
) -> V3Result:
    """Query one coupon (§7a.4)."""
    coupon = world.state.coupons.get(coupon_id)
    if coupon is None or coupon.openid != openid:
        raise V3Error(404, "RESOURCE_NOT_EXISTS", "代金券不存在")
    if request.args.get("appid") not in merchant.appids:
        raise V3Error(400, "APPID_MCHID_NOT_MATCH", "appid与商户号未绑定")
    return 200, render_coupon(world, coupon)


@bp.post("/v3/marketing/favor/callbacks")
@v3_endpoint("v3.favor_callbacks")
def callbacks(world: World, merchant: Merchant, body: dict[str, Any]) -> V3Result:
    """Set the COUPON.USE notify URL (§7a.5)."""
    require(body, "mchid")
    if body["mchid"] != merchant.mchid:
        raise V3Error(400, "PARAM_ERROR", "mchid 与请求商户号不一致")
    if body.get("switch", True):
        if body.get("notify_url"):
            merchant.coupon_notify_url = str(body["notify_url"])
    else:
        merchant.coupon_notify_url = None
    return 200, {"update_time": rfc3339(world.clock.now()), "notify_url": merchant.coupon_notify_url or ""}
