"""Sandbox-only admin API: what users and staff do in WeChat (pay, confirm, open, redeem…).

Each action changes state like WeChat would and delivers the resulting notifications before answering
(``"deliver": false`` leaves them queued).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from flask import Blueprint, Response, jsonify

from wechat.sandbox.admin import AdminError, app_of, by_key, install_error_handlers, json_body, run, user_of
from wechat.sandbox.cards import consume_code, delete_code, receive_card
from wechat.sandbox.marketing import render_coupon, use_coupon
from wechat.sandbox.pay import pay_order, render_refund, render_transaction, resolve_refund
from wechat.sandbox.payouts import (
    arm_redpack_timer,
    confirm_transfer_bill,
    refund_redpack,
    render_hbinfo,
    render_transfer_bill,
    set_bill_state,
)
from wechat.sandbox.state import CardCode, move
from wechat.sandbox.world import World, current_world

bp = Blueprint("sandbox_actions", __name__, url_prefix="/_sandbox")
install_error_handlers(bp)


@bp.post("/transactions/<out_trade_no>/pay")
def pay(out_trade_no: str) -> Response:
    """The user pays a JSAPI order (optionally with a voucher); TRANSACTION.SUCCESS is delivered."""
    world = current_world()
    body = json_body()

    def act() -> dict[str, Any]:
        order = by_key(world, body, out_trade_no, world.state.orders)
        pay_order(world, order, coupon_id=body.get("coupon_id"))
        return render_transaction(world, order)

    return jsonify(run(world, act, bool(body.get("deliver", True))))


@bp.post("/transactions/<out_trade_no>/fail")
def pay_fail(out_trade_no: str) -> Response:
    """The payment fails (bank declined): NOTPAY → PAYERROR. Only successes are notified (§3.10)."""
    world = current_world()
    body = json_body()

    def act() -> dict[str, Any]:
        order = by_key(world, body, out_trade_no, world.state.orders)
        if order.status != "NOTPAY":
            raise AdminError(409, "invalid_state", f"order is {order.status}")
        move("order", order, "PAYERROR")
        return render_transaction(world, order)

    return jsonify(run(world, act))


@bp.post("/refunds/<out_refund_no>/resolve")
def resolve(out_refund_no: str) -> Response:
    """Force a refund outcome: SUCCESS, ABNORMAL or CLOSED (notification follows)."""
    world = current_world()
    body = json_body()

    def act() -> dict[str, Any]:
        refund = by_key(world, body, out_refund_no, world.state.refunds)
        status = body.get("status")
        if status not in ("SUCCESS", "ABNORMAL", "CLOSED"):
            raise AdminError(
                422, "invalid_field", "status must be SUCCESS, ABNORMAL or CLOSED", {"field": "status"}
            )
        resolve_refund(world, refund, status)
        return render_refund(refund)

    return jsonify(run(world, act, bool(body.get("deliver", True))))


@bp.post("/redpacks/<mch_billno>/open")
def redpack_open(mch_billno: str) -> Response:
    """The user opens a cash red packet (a group packet: the seed opens the first share): SENT → RECEIVED."""
    world = current_world()
    body = json_body()

    def act() -> dict[str, Any]:
        packet = by_key(world, body, mch_billno, world.state.redpacks)
        move("redpack", packet, "RECEIVED")
        packet.rcv_time = world.clock.now()
        packet.opened = 1
        if packet.hb_type == "GROUP":
            arm_redpack_timer(world, packet)  # the friends' unopened shares go back at expiry
        return render_hbinfo(packet)

    return jsonify(run(world, act))


@bp.post("/redpacks/<mch_billno>/friends-open")
def redpack_friends_open(mch_billno: str) -> Response:
    """``{"count": n}``: n more friends the seed shared a group packet with open their shares, in order."""
    world = current_world()
    body = json_body()

    def act() -> dict[str, Any]:
        packet = by_key(world, body, mch_billno, world.state.redpacks)
        count = body.get("count", 1)
        if packet.hb_type != "GROUP":
            raise AdminError(409, "invalid_state", "not a group red packet")
        if packet.status != "RECEIVED" or packet.refund_time is not None:
            raise AdminError(409, "invalid_state", f"packet is {packet.status}: the seed opens it first")
        if (
            not isinstance(count, int)
            or isinstance(count, bool)
            or not 1 <= count <= len(packet.shares) - packet.opened
        ):
            raise AdminError(
                422,
                "invalid_field",
                f"count must be 1..{len(packet.shares) - packet.opened}",
                {"field": "count"},
            )
        packet.opened += count
        return render_hbinfo(packet)

    return jsonify(run(world, act))


@bp.post("/merchants/<mchid>/cash-red-packets")
def cash_red_packets_switch(mchid: str) -> Response:
    """``{"enabled": false, "code": "NO_AUTH"|"PRODUCT_AUTHORITY_UNOPEN"}``: the merchant's account lacks
    cash red packets, and every send answers that code (``enabled`` true gives them back)."""
    world = current_world()
    body = json_body()
    code = body.get("code", "NO_AUTH")
    if code not in ("NO_AUTH", "PRODUCT_AUTHORITY_UNOPEN"):
        raise AdminError(422, "invalid_field", "code: NO_AUTH or PRODUCT_AUTHORITY_UNOPEN", {"field": "code"})
    with world.lock:
        merchant = world.state.merchants.get(mchid)
        if merchant is None:
            raise AdminError(404, "not_found", f"merchant {mchid} not found")
        merchant.cash_red_packets = bool(body.get("enabled", True))
        merchant.cash_red_packets_code = code
        return jsonify({"mchid": mchid, "cash_red_packets": merchant.cash_red_packets, "code": code})


@bp.post("/redpacks/<mch_billno>/ignore")
def redpack_ignore(mch_billno: str) -> Response:
    """The user never opens it: jump to the 24 h outcome now (SENT → RFUND_ING → REFUND)."""
    world = current_world()
    body = json_body()

    def act() -> dict[str, Any]:
        packet = by_key(world, body, mch_billno, world.state.redpacks)
        move("redpack", packet, "RFUND_ING")
        refund_redpack(world, packet)
        return render_hbinfo(packet)

    return jsonify(run(world, act))


@bp.post("/transfer-bills/<out_bill_no>/confirm")
def transfer_confirm(out_bill_no: str) -> Response:
    """The user confirms in the mini-program (``wx.requestMerchantTransfer``): → SUCCESS, notification."""
    world = current_world()
    body = json_body()

    def act() -> dict[str, Any]:
        bill = by_key(world, body, out_bill_no, world.state.transfer_bills)
        if bill.state != "WAIT_USER_CONFIRM":
            raise AdminError(409, "invalid_state", f"bill is {bill.state}")
        confirm_transfer_bill(world, bill)
        return render_transfer_bill(bill)

    return jsonify(run(world, act, bool(body.get("deliver", True))))


def _check_js_config(world: World, app_id: str, page: Any) -> None:
    """An official-account page may call the JS-SDK only after ``wx.config`` with a valid signature:
    sha1 of ``jsapi_ticket``, ``noncestr``, ``timestamp`` and the page ``url`` (sorted ``k=v&…``), with the
    ticket WeChat issued to that account, and the API in ``jsApiList`` (§7b)."""
    if not isinstance(page, dict):
        raise AdminError(403, "config_missing", "the page did not call wx.config", {"field": "page"})
    text = {k: str(page.get(k, "")) for k in ("url", "appId", "timestamp", "nonceStr", "signature")}
    ticket = world.state.tickets.get((app_id, "jsapi"))
    raw = (
        f"jsapi_ticket={ticket[0] if ticket else ''}&noncestr={text['nonceStr']}"
        f"&timestamp={text['timestamp']}&url={text['url'].split('#', 1)[0]}"
    )
    expected = hashlib.sha1(raw.encode("utf-8")).hexdigest()  # noqa: S324 - WeChat's algorithm
    if ticket is None or text["appId"] != app_id or not hmac.compare_digest(expected, text["signature"]):
        raise AdminError(403, "invalid_signature", "config:invalid signature")
    if "requestMerchantTransfer" not in (page.get("jsApiList") or []):
        raise AdminError(403, "permission_denied", "requestMerchantTransfer:permission denied")


@bp.post("/users/<uid>/request-merchant-transfer")
def request_merchant_transfer(uid: str) -> Response:
    """The user confirms a transfer bill where they are, with what the merchant's page handed the client:
    ``wx.requestMerchantTransfer({mchId, appId, package})`` in the mini-program ``appId``, or the same
    through the JS-SDK on an official-account page, which must have passed ``wx.config`` (``page``:
    ``{url, appId, timestamp, nonceStr, signature, jsApiList}``). The bill must be this user's at that app."""
    world = current_world()
    body = json_body()

    def act() -> dict[str, Any]:
        user = user_of(world, uid)
        app = app_of(world, str(body.get("appId", "")))
        if app.kind == "official":
            _check_js_config(world, app.appid, body.get("page"))
        bills = [
            bill
            for bill in world.state.transfer_bills.values()
            if bill.package_info and hmac.compare_digest(bill.package_info, str(body.get("package", "")))
        ]
        if len(bills) != 1 or bills[0].mchid != str(body.get("mchId", "")) or bills[0].appid != app.appid:
            raise AdminError(400, "invalid_package", "requestMerchantTransfer:fail invalid package")
        bill = bills[0]
        if user.openids.get(app.appid) != bill.openid:
            raise AdminError(403, "not_payee", "requestMerchantTransfer:fail the bill is another user's")
        if bill.state != "WAIT_USER_CONFIRM":
            raise AdminError(409, "invalid_state", f"bill is {bill.state}")
        confirm_transfer_bill(world, bill)
        return {"errMsg": "requestMerchantTransfer:ok", **render_transfer_bill(bill)}

    return jsonify(run(world, act, bool(body.get("deliver", True))))


@bp.post("/transfer-bills/<out_bill_no>/reject")
def transfer_reject(out_bill_no: str) -> Response:
    """The transfer fails instead (``fail_reason`` default OTHER_FAIL_REASON_TYPE); money returns."""
    world = current_world()
    body = json_body()

    def act() -> dict[str, Any]:
        bill = by_key(world, body, out_bill_no, world.state.transfer_bills)
        if bill.state != "WAIT_USER_CONFIRM":
            raise AdminError(409, "invalid_state", f"bill is {bill.state}")
        set_bill_state(world, bill, "FAIL", str(body.get("fail_reason", "OTHER_FAIL_REASON_TYPE")))
        return render_transfer_bill(bill)

    return jsonify(run(world, act, bool(body.get("deliver", True))))


@bp.post("/coupons/<coupon_id>/use")
def coupon_use(coupon_id: str) -> Response:
    """Mark a voucher used outside a sandbox payment; COUPON.USE is delivered."""
    world = current_world()
    body = json_body()

    def act() -> dict[str, Any]:
        coupon = world.state.coupons.get(coupon_id)
        if coupon is None:
            raise AdminError(404, "not_found", f"coupon {coupon_id} not found")
        stock = world.state.stocks[coupon.stock_id]
        use_coupon(
            world,
            coupon,
            transaction_id=str(body.get("transaction_id", "4200" + "0" * 24)),
            mchid=str(body.get("mchid", stock.creator_mchid)),
        )
        return render_coupon(world, coupon)

    return jsonify(run(world, act, bool(body.get("deliver", True))))


@bp.post("/cards/receive")
def card_receive() -> Response:
    """The user adds a card to the card pack: ``user_get_card`` is pushed; returns code and encrypt_code."""
    world = current_world()
    body = json_body()

    def act() -> dict[str, Any]:
        user = user_of(world, str(body.get("user_id", "")))
        card = world.state.cards.get(str(body.get("card_id", "")))
        if card is None:
            raise AdminError(404, "not_found", "card not found", {"field": "card_id"})
        issued = receive_card(
            world, world.state.apps[card.appid], user, card, body.get("code"), str(body.get("outer_str", ""))
        )
        return {
            "code": issued.code,
            "encrypt_code": issued.encrypt_code,
            "openid": issued.openid,
            "card_id": card.card_id,
        }

    return jsonify(run(world, act, bool(body.get("deliver", True))))


def _card_code(world: World, code: str) -> CardCode:
    issued = world.state.card_codes.get(code)
    if issued is None:
        raise AdminError(404, "not_found", f"code {code} not found")
    return issued


@bp.post("/cards/<code>/consume")
def card_consume(code: str) -> Response:
    """Staff redeem the code in the merchant helper app: ``user_consume_card`` (FROM_MOBILE_HELPER)."""
    world = current_world()
    body = json_body()

    def act() -> dict[str, Any]:
        issued = _card_code(world, code)
        consume_code(world, issued, "FROM_MOBILE_HELPER")
        return {"code": code, "status": issued.status}

    return jsonify(run(world, act, bool(body.get("deliver", True))))


@bp.post("/cards/<code>/delete")
def card_delete(code: str) -> Response:
    """The user deletes the card: ``user_del_card``."""
    world = current_world()
    body = json_body()

    def act() -> dict[str, Any]:
        issued = _card_code(world, code)
        delete_code(world, issued)
        return {"code": code, "status": issued.status}

    return jsonify(run(world, act, bool(body.get("deliver", True))))
