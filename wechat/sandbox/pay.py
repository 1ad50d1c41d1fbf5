"""Payment domain of the sandbox: orders, refunds and trade bills (protocol doc §3.7–§3.12, §8).

Functions take the world and run under ``world.lock`` (held by the caller); they raise ``V3Error``.
"""

from __future__ import annotations

import gzip
import re
from typing import Any

from wechat.sandbox.clock import cst_format, rfc3339
from wechat.sandbox.marketing import best_voucher, coupon_discount, use_coupon
from wechat.sandbox.state import Coupon, Merchant, Order, Refund, move
from wechat.sandbox.v3 import V3Error
from wechat.sandbox.world import World

OUT_TRADE_NO = re.compile(r"^[0-9A-Za-z_\-*]{6,32}$")
OUT_REFUND_NO = re.compile(r"^[0-9A-Za-z_\-|*@]{1,64}$")


def yuan(fen: int) -> str:
    """Bills are in yuan (§0.4); format integer fen without floats."""
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


# ------------------------------------------------------------------ orders


def render_transaction(world: World, order: Order) -> dict[str, Any]:
    """The Transaction object of query and TRANSACTION.SUCCESS (§3.10)."""
    desc = {
        "NOTPAY": "订单未支付",
        "SUCCESS": "支付成功",
        "CLOSED": "订单已关闭",
        "REFUND": "转入退款",
        "PAYERROR": "支付失败",
    }[order.status]
    out: dict[str, Any] = {
        "appid": order.appid,
        "mchid": order.mchid,
        "out_trade_no": order.out_trade_no,
        "trade_type": "JSAPI",
        "trade_state": order.status,
        "trade_state_desc": desc,
        "attach": order.attach,
        "payer": {"openid": order.openid},
        "amount": {"total": order.total, "currency": "CNY"},
    }
    if order.transaction_id:
        out["transaction_id"] = order.transaction_id
        out["bank_type"] = "OTHERS"
        out["success_time"] = rfc3339(order.success_time or 0)
        out["amount"].update({"payer_total": order.payer_total, "payer_currency": "CNY"})
    if order.coupon_id:
        coupon = world.state.coupons[order.coupon_id]
        stock = world.state.stocks[coupon.stock_id]
        out["promotion_detail"] = [
            {
                "coupon_id": coupon.coupon_id,
                "name": stock.name,
                "scope": "GLOBAL",
                "type": "CASH" if not stock.no_cash else "NOCASH",
                "amount": order.total - order.payer_total,
                "stock_id": stock.stock_id,
                "wechatpay_contribute": 0,
                "merchant_contribute": order.total - order.payer_total,
                "other_contribute": 0,
                "currency": "CNY",
            }
        ]
    return out


def find_order(world: World, mchid: str, out_trade_no: str) -> Order | None:
    return world.state.orders.get((mchid, out_trade_no))


def pay_order(world: World, order: Order, *, coupon_id: str | None = None) -> None:
    """The user pays: NOTPAY → SUCCESS, money in, TRANSACTION.SUCCESS queued (and COUPON.USE if any).

    Like WeChat Pay's checkout, the user's best usable voucher of this merchant is applied unless a
    ``coupon_id`` is named (``""`` pays without one): the payer total drops by its amount,
    ``promotion_detail`` says so, and ``COUPON.USE`` follows the payment's notification."""
    now = world.clock.now()
    if order.status != "NOTPAY":
        raise V3Error(
            400,
            "ORDERPAID" if order.status in ("SUCCESS", "REFUND") else "ORDER_CLOSED",
            f"订单状态为{order.status}，不能支付",
        )
    if now > order.expires_at:
        raise V3Error(400, "ORDER_CLOSED", "订单已过期")
    merchant = world.state.merchants[order.mchid]
    discount = 0
    coupon: Coupon | None = None
    if coupon_id is None:
        coupon = best_voucher(world, order)
        discount = coupon_discount(world, coupon, order) if coupon is not None else 0
    elif coupon_id:
        coupon = world.state.coupons.get(coupon_id)
        if coupon is None:
            raise V3Error(404, "RESOURCE_NOT_EXISTS", "代金券不存在")
        discount = coupon_discount(world, coupon, order)
    move("order", order, "SUCCESS")
    order.transaction_id = "4200" + world.rng.digits(24)
    order.success_time = now
    order.payer_total = order.total - discount
    # 预充值 (CASH): the merchant is settled the whole total (the voucher was prefunded); 免充值 (NOCASH):
    # the merchant bears the voucher and is settled what the payer paid.
    no_cash = coupon is not None and world.state.stocks[coupon.stock_id].no_cash
    merchant.balance_fen += order.payer_total if no_cash else order.total
    if coupon is not None:
        order.coupon_id = coupon.coupon_id
    world.notifier.v3(
        merchant,
        order.notify_url,
        event_type="TRANSACTION.SUCCESS",
        summary="支付成功",
        original_type="transaction",
        associated_data="transaction",
        resource=render_transaction(world, order),
    )
    if coupon is not None:
        use_coupon(world, coupon, transaction_id=order.transaction_id, mchid=order.mchid)


# ------------------------------------------------------------------ refunds


def render_refund(refund: Refund) -> dict[str, Any]:
    """Refund object of create/query (§3.11)."""
    out: dict[str, Any] = {
        "refund_id": refund.refund_id,
        "out_refund_no": refund.out_refund_no,
        "transaction_id": refund.transaction_id,
        "out_trade_no": refund.out_trade_no,
        "channel": "ORIGINAL",
        "user_received_account": "支付用户零钱",
        "create_time": rfc3339(refund.created_at),
        "status": refund.status,
        "funds_account": "AVAILABLE",
        "amount": {
            "total": refund.total,
            "refund": refund.amount,
            "from": [],
            "payer_total": refund.total,
            "payer_refund": refund.amount,
            "settlement_refund": refund.amount,
            "settlement_total": refund.total,
            "discount_refund": 0,
            "currency": "CNY",
        },
        "promotion_detail": [],
    }
    if refund.success_time is not None:
        out["success_time"] = rfc3339(refund.success_time)
    return out


def refund_notice(refund: Refund) -> dict[str, Any]:
    """Decrypted REFUND.* resource; note ``refund_status``, not ``status`` (§3.12)."""
    out: dict[str, Any] = {
        "mchid": refund.mchid,
        "out_trade_no": refund.out_trade_no,
        "transaction_id": refund.transaction_id,
        "out_refund_no": refund.out_refund_no,
        "refund_id": refund.refund_id,
        "refund_status": refund.status,
        "user_received_account": "支付用户零钱",
        "amount": {
            "total": refund.total,
            "refund": refund.amount,
            "payer_total": refund.total,
            "payer_refund": refund.amount,
        },
    }
    if refund.success_time is not None:
        out["success_time"] = rfc3339(refund.success_time)
    return out


def create_refund(world: World, merchant: Merchant, body: dict[str, Any], order: Order) -> Refund:
    """Accept a refund (PROCESSING) and schedule its completion."""
    amount = body["amount"]["refund"]
    if amount <= 0:
        raise V3Error(400, "PARAM_ERROR", "退款金额必须大于0")
    if body["amount"]["total"] != order.total:
        raise V3Error(400, "PARAM_ERROR", "订单金额与原订单不一致")
    if order.status not in ("SUCCESS", "REFUND"):
        raise V3Error(400, "INVALID_REQUEST", "订单未支付，不能退款")
    if order.refunded_fen + amount > order.total:
        raise V3Error(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
    if merchant.balance_fen < amount:
        raise V3Error(403, "NOT_ENOUGH", "基本账户余额不足，请充值后重新发起")
    merchant.balance_fen -= amount
    order.refunded_fen += amount
    refund = Refund(
        mchid=merchant.mchid,
        out_refund_no=body["out_refund_no"],
        refund_id="50" + world.rng.digits(30),
        out_trade_no=order.out_trade_no,
        transaction_id=order.transaction_id,
        amount=amount,
        total=order.total,
        notify_url=body.get("notify_url") or merchant.notify_url,
        reason=body.get("reason", ""),
        created_at=world.clock.now(),
    )
    world.state.refunds[(merchant.mchid, refund.out_refund_no)] = refund
    arm_refund_timer(world, refund)
    return refund


def arm_refund_timer(world: World, refund: Refund) -> None:
    """PROCESSING refunds succeed ``refund_delay_s`` after creation unless resolved first."""

    def complete() -> None:
        with world.lock:
            if refund.status == "PROCESSING":
                resolve_refund(world, refund, "SUCCESS")

    if refund.status == "PROCESSING":
        due = refund.created_at + world.config.refund_delay_s / world.config.time_scale
        world.scheduler.at(due, complete, f"refund {refund.out_refund_no}")


def resolve_refund(world: World, refund: Refund, status: str) -> None:
    """Move a refund to SUCCESS / ABNORMAL / CLOSED and queue the REFUND.* notification."""
    move("refund", refund, status)
    merchant = world.state.merchants[refund.mchid]
    order = world.state.orders[(refund.mchid, refund.out_trade_no)]
    if status == "SUCCESS":
        refund.success_time = world.clock.now()
        if order.status == "SUCCESS":
            move("order", order, "REFUND")
    elif status == "CLOSED":
        merchant.balance_fen += refund.amount
        order.refunded_fen -= refund.amount
    world.notifier.v3(
        merchant,
        refund.notify_url,
        event_type=f"REFUND.{status}",
        summary={"SUCCESS": "退款成功", "ABNORMAL": "退款异常", "CLOSED": "退款关闭"}[status],
        original_type="refund",
        associated_data="refund",
        resource=refund_notice(refund),
    )


# ------------------------------------------------------------------ trade bill (§8)

BILL_COLUMNS = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
    "货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,"
    "商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)
SUMMARY_COLUMNS = (
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
)
FEE_BP = 60  # 0.60 % fee, basis points; half-up to the fen


def _fee(fen: int) -> int:
    return (fen * FEE_BP + 5000) // 10000


def build_trade_bill(world: World, mchid: str, bill_date: str, bill_type: str) -> bytes | None:
    """CSV text of the trade bill (backtick-prefixed fields, yuan amounts); ``None`` when empty."""
    rows: list[
        tuple[str, list[str], int, int, int, int]
    ] = []  # (out_trade_no, cells, settle, refund, fee, order)
    mismatches = [m for m in world.state.bill_mismatches if m.mchid == mchid and m.bill_date == bill_date]
    if bill_type in ("ALL", "SUCCESS"):
        for order in world.state.orders.values():
            if order.mchid != mchid or order.success_time is None:
                continue
            if cst_format(order.success_time, "%Y-%m-%d") != bill_date:
                continue
            settle = order.total
            for m in mismatches:
                if m.kind == "amount" and m.out_trade_no == order.out_trade_no:
                    settle = m.amount_fen
            if any(m.kind == "missing" and m.out_trade_no == order.out_trade_no for m in mismatches):
                continue
            cells = [
                cst_format(order.success_time, "%Y-%m-%d %H:%M:%S"),
                order.appid,
                mchid,
                "0",
                "",
                order.transaction_id,
                order.out_trade_no,
                order.openid,
                "JSAPI",
                "SUCCESS",
                "OTHERS",
                "CNY",
                yuan(settle),
                yuan(order.total - order.payer_total),
                "0",
                "0",
                "0.00",
                "0.00",
                "",
                "",
                order.description,
                order.attach,
                yuan(_fee(settle)),
                "0.60%",
                yuan(order.total),
                "0.00",
                "",
            ]
            rows.append((order.out_trade_no, cells, settle, 0, _fee(settle), order.total))
        for m in mismatches:
            if m.kind == "extra":
                cells = [
                    f"{bill_date} 12:00:00",
                    "",
                    mchid,
                    "0",
                    "",
                    "4200" + "0" * 24,
                    m.out_trade_no,
                    "",
                    "JSAPI",
                    "SUCCESS",
                    "OTHERS",
                    "CNY",
                    yuan(m.amount_fen),
                    "0.00",
                    "0",
                    "0",
                    "0.00",
                    "0.00",
                    "",
                    "",
                    "sandbox extra row",
                    "",
                    yuan(_fee(m.amount_fen)),
                    "0.60%",
                    yuan(m.amount_fen),
                    "0.00",
                    "",
                ]
                rows.append((m.out_trade_no, cells, m.amount_fen, 0, _fee(m.amount_fen), m.amount_fen))
    if bill_type in ("ALL", "REFUND"):
        for refund in world.state.refunds.values():
            if refund.mchid != mchid or refund.status != "SUCCESS" or refund.success_time is None:
                continue
            if cst_format(refund.success_time, "%Y-%m-%d") != bill_date:
                continue
            order = world.state.orders[(mchid, refund.out_trade_no)]
            fee = -_fee(refund.amount)
            cells = [
                cst_format(refund.success_time, "%Y-%m-%d %H:%M:%S"),
                order.appid,
                mchid,
                "0",
                "",
                refund.transaction_id,
                refund.out_trade_no,
                order.openid,
                "JSAPI",
                "REFUND",
                "OTHERS",
                "CNY",
                "0.00",
                "0.00",
                refund.refund_id,
                refund.out_refund_no,
                yuan(refund.amount),
                "0.00",
                "ORIGINAL",
                "SUCCESS",
                order.description,
                order.attach,
                yuan(fee),
                "0.60%",
                "0.00",
                yuan(refund.amount),
                "",
            ]
            rows.append((refund.out_trade_no, cells, 0, refund.amount, fee, 0))
    if not rows:
        return None
    lines = [BILL_COLUMNS]
    lines += [",".join("`" + c for c in cells) for _, cells, *_ in rows]
    lines.append(SUMMARY_COLUMNS)
    summary = [
        str(len(rows)),
        yuan(sum(r[2] for r in rows)),
        yuan(sum(r[3] for r in rows)),
        "0.00",
        yuan(sum(r[4] for r in rows)),
        yuan(sum(r[5] for r in rows)),
        yuan(sum(r[3] for r in rows)),
    ]
    lines.append(",".join("`" + c for c in summary))
    return ("\r\n".join(lines) + "\r\n").encode()


def gzip_bytes(data: bytes) -> bytes:
    """Deterministic gzip (mtime 0) so seeded runs produce identical downloads."""
    return gzip.compress(data, mtime=0)
