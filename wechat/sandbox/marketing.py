"""WeChat Pay vouchers (代金券, "favor"): stocks, coupons, COUPON.USE (protocol doc §7a)."""

from __future__ import annotations

from typing import Any

from wechat.sandbox.clock import parse_rfc3339, rfc3339
from wechat.sandbox.state import Coupon, Order, Stock, move
from wechat.sandbox.v3 import V3Error
from wechat.sandbox.world import World


def coupon_status(world: World, coupon: Coupon) -> str:
    """SENDED coupons past the stock's end time read as EXPIRED (lazily, on the sandbox clock)."""
    stock = world.state.stocks[coupon.stock_id]
    if coupon.status == "SENDED" and world.clock.now() > stock.available_end:
        move("coupon", coupon, "EXPIRED")
    return coupon.status


def render_coupon(world: World, coupon: Coupon) -> dict[str, Any]:
    """Coupon object of the query API (§7a.4)."""
    stock = world.state.stocks[coupon.stock_id]
    return {
        "stock_creator_mchid": stock.creator_mchid,
        "stock_id": stock.stock_id,
        "coupon_id": coupon.coupon_id,
        "coupon_name": stock.name,
        "status": coupon_status(world, coupon),
        "description": stock.name,
        "create_time": rfc3339(coupon.created_at),
        "coupon_type": "NORMAL",
        "no_cash": stock.no_cash,
        "available_begin_time": rfc3339(stock.available_begin),
        "available_end_time": rfc3339(stock.available_end),
        "singleitem": False,
        "normal_coupon_information": {
            "coupon_amount": stock.coupon_amount,
            "transaction_minimum": stock.transaction_minimum,
        },
    }


def coupon_discount(world: World, coupon: Coupon, order: Order) -> int:
    """Discount in fen if ``coupon`` can pay part of ``order``; raises otherwise."""
    stock = world.state.stocks[coupon.stock_id]
    if coupon_status(world, coupon) != "SENDED":
        raise V3Error(400, "INVALID_REQUEST", f"代金券状态为{coupon.status}，不可使用")
    if coupon.openid != order.openid and world.state.user_by_openid(coupon.appid, coupon.openid) is not (
        world.state.user_by_openid(order.appid, order.openid)
    ):
        raise V3Error(400, "INVALID_REQUEST", "代金券不属于该用户")
    if order.total < stock.transaction_minimum or order.total <= stock.coupon_amount:
        raise V3Error(400, "INVALID_REQUEST", "订单金额未达到代金券使用门槛")
    return stock.coupon_amount


def best_voucher(world: World, order: Order) -> Coupon | None:
    """The voucher WeChat Pay applies at checkout: the user's (any of their openids), of a stock this
    merchant created, usable now on this order; the largest first (then the oldest)."""
    payer = world.state.user_by_openid(order.appid, order.openid)
    usable = []
    for coupon in world.state.coupons.values():
        stock = world.state.stocks[coupon.stock_id]
        if stock.creator_mchid != order.mchid or coupon_status(world, coupon) != "SENDED":
            continue
        owner = world.state.user_by_openid(coupon.appid, coupon.openid)
        if coupon.openid != order.openid and (owner is None or owner is not payer):
            continue
        if not stock.available_begin <= world.clock.now() <= stock.available_end:
            continue
        if order.total < stock.transaction_minimum or order.total <= stock.coupon_amount:
            continue
        usable.append((-stock.coupon_amount, coupon.created_at, coupon.coupon_id, coupon))
    return min(usable, key=lambda row: row[:3])[3] if usable else None


def use_coupon(world: World, coupon: Coupon, *, transaction_id: str, mchid: str) -> None:
    """SENDED → USED and queue COUPON.USE to the stock creator's favor callback (§7a.5)."""
    if coupon_status(world, coupon) != "SENDED":
        raise V3Error(400, "INVALID_REQUEST", f"代金券状态为{coupon.status}，不可使用")
    move("coupon", coupon, "USED")
    coupon.used_at = world.clock.now()
    coupon.transaction_id = transaction_id
    stock = world.state.stocks[coupon.stock_id]
    creator = world.state.merchants[stock.creator_mchid]
    resource = render_coupon(world, coupon)
    resource["consume_information"] = {
        "consume_time": rfc3339(coupon.used_at),
        "consume_mchid": mchid,
        "transaction_id": transaction_id,
    }
    world.notifier.v3(
        creator,
        creator.coupon_notify_url,
        event_type="COUPON.USE",
        summary="用券成功",
        original_type="coupon",
        associated_data="",
        resource=resource,
    )


def create_stock(world: World, mchid: str, body: dict[str, Any]) -> Stock:
    """Create an unactivated stock from a coupon-stocks request (§7a.1)."""
    rule = body["stock_use_rule"]
    normal = body["coupon_use_rule"]["fixed_normal_coupon"]
    try:
        begin = parse_rfc3339(body["available_begin_time"])
        end = parse_rfc3339(body["available_end_time"])
    except (ValueError, TypeError) as exc:
        raise V3Error(400, "PARAM_ERROR", "available_begin_time/available_end_time 必须为RFC3339") from exc
    amount = normal.get("coupon_amount")
    max_coupons = rule.get("max_coupons")
    if not isinstance(amount, int) or not isinstance(max_coupons, int) or amount <= 0 or max_coupons <= 0:
        raise V3Error(400, "PARAM_ERROR", "coupon_amount/max_coupons 必须为正整数")
    if rule.get("max_amount") not in (None, amount * max_coupons):
        raise V3Error(400, "PARAM_ERROR", "max_amount 必须等于 coupon_amount × max_coupons")
    stock = Stock(
        stock_id=world.rng.digits(8),
        creator_mchid=mchid,
        name=str(body["stock_name"]),
        coupon_amount=amount,
        transaction_minimum=int(normal.get("transaction_minimum", 0)),
        max_coupons=max_coupons,
        max_coupons_per_user=int(rule.get("max_coupons_per_user", 1)),
        available_begin=begin,
        available_end=end,
        no_cash=bool(body.get("no_cash", False)),
        created_at=world.clock.now(),
    )
    world.state.stocks[stock.stock_id] = stock
    return stock


def send_coupon(world: World, stock: Stock, appid: str, openid: str) -> Coupon:
    """Issue one coupon of a running stock to a user (§7a.3)."""
    now = world.clock.now()
    if stock.status != "running":
        raise V3Error(403, "RULE_LIMIT", "批次未激活或已暂停/停止")
    if not stock.available_begin <= now <= stock.available_end:
        raise V3Error(403, "RULE_LIMIT", "批次不在可用时间内")
    if stock.sent >= stock.max_coupons:
        raise V3Error(403, "NOT_ENOUGH", "批次预算耗尽")
    held = sum(1 for c in world.state.coupons.values() if c.stock_id == stock.stock_id and c.openid == openid)
    if held >= stock.max_coupons_per_user:
        raise V3Error(403, "RULE_LIMIT", "用户领券已达上限")
    coupon = Coupon(world.rng.digits(10), stock.stock_id, openid, appid, now)
    world.state.coupons[coupon.coupon_id] = coupon
    stock.sent += 1
    return coupon
