"""Pay v2 XML surface: cash red packets and transfers to change (protocol doc §5, §6.3).

Client-certificate (mTLS) checks are not simulated: in-process there is no TLS layer (see docs/sandbox.md).
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint

from wechat.sandbox.clock import cst_format
from wechat.sandbox.payouts import arm_redpack_timer, render_hbinfo, split_group
from wechat.sandbox.state import IdemEntry, Merchant, RedPacket, V2Transfer, move
from wechat.sandbox.v2 import V2Error, v2_endpoint, v2_fingerprint
from wechat.sandbox.world import World

bp = Blueprint("sandbox_pay_v2", __name__)

PRODUCT_OFF_TEXT = "商户无权限，请开通现金红包产品权限"
BILLNO = re.compile(r"^[0-9A-Za-z]{1,28}$")
REDPACK_FIELDS = (
    "mch_billno",
    "wxappid",
    "send_name",
    "re_openid",
    "total_amount",
    "total_num",
    "wishing",
    "act_name",
    "remark",
)


def _amount(params: dict[str, str], field: str) -> int:
    try:
        value = int(params[field])
    except (KeyError, ValueError) as exc:
        raise V2Error("PARAM_ERROR", f"{field}必须为整数(分)") from exc
    if value <= 0:
        raise V2Error("PARAM_ERROR", f"{field}必须大于0")
    return value


def _idem(
    world: World, merchant: Merchant, api: str, key: str, params: dict[str, str]
) -> dict[str, Any] | None:
    """Replay a stored success; FATAL_ERROR when the same number comes with other parameters (§5.2)."""
    entry = world.state.idempotency.get((merchant.mchid, api, key))
    if entry is None:
        return None
    if entry.fingerprint != v2_fingerprint(params):
        raise V2Error("FATAL_ERROR", "已存在该单号，但请求参数与原单不一致")
    return dict(entry.payload)


def _store(
    world: World, merchant: Merchant, api: str, key: str, params: dict[str, str], result: dict[str, Any]
) -> None:
    world.state.idempotency[(merchant.mchid, api, key)] = IdemEntry(v2_fingerprint(params), 200, dict(result))


def _send(world: World, merchant: Merchant, params: dict[str, str], *, group: bool) -> dict[str, Any]:
    billno = params["mch_billno"]
    if not BILLNO.match(billno):
        raise V2Error("PARAM_ERROR", "mch_billno须为不超过28位的字母或数字")
    replay = _idem(world, merchant, "redpack", billno, params)
    if replay is not None:
        return replay
    if not merchant.cash_red_packets:
        raise V2Error(merchant.cash_red_packets_code, PRODUCT_OFF_TEXT)
    appid = params["wxappid"]
    app = world.state.apps.get(appid)
    if appid not in merchant.appids or app is None or app.kind != "official":
        raise V2Error("ILLEGAL_APPID", "wxappid须为与商户号绑定的公众号AppID")
    if world.state.user_by_openid(appid, params["re_openid"]) is None:
        raise V2Error("OPENID_ERROR", "openid和appid不匹配")
    amount = _amount(params, "total_amount")
    num = _amount(params, "total_num")
    if group:
        if num < 3:
            raise V2Error("PARAM_ERROR", "裂变红包total_num须不小于3")
        if params.get("amt_type") != "ALL_RAND":
            raise V2Error("PARAM_ERROR", "amt_type须为ALL_RAND")
        if not 100 * num <= amount <= 20000 * num:
            raise V2Error("MONEY_LIMIT", "每个红包的平均金额必须在1.00元到200.00元之间")
    else:
        if num != 1:
            raise V2Error("PARAM_ERROR", "普通红包total_num必须为1")
        if not params.get("client_ip"):
            raise V2Error("PARAM_ERROR", "参数client_ip缺失")
        # 1–200 yuan without scene_id; scene_id needed outside that range (§5.1).
        if not params.get("scene_id") and not 100 <= amount <= 20000:
            raise V2Error("MONEY_LIMIT", "红包金额须在1.00元到200.00元之间，或传入scene_id")
    today = cst_format(world.clock.now(), "%Y%m%d")
    received_today = sum(
        1
        for p in world.state.redpacks.values()
        if p.mchid == merchant.mchid
        and p.openid == params["re_openid"]
        and cst_format(p.send_time, "%Y%m%d") == today
    )
    if received_today >= world.config.redpack_daily_per_user:
        raise V2Error("SENDNUM_LIMIT", "该用户今日领取红包个数超过限制")
    if merchant.balance_fen < amount:
        raise V2Error("NOTENOUGH", "帐号余额不足，请到商户平台充值后再重试")
    merchant.balance_fen -= amount
    now = world.clock.now()
    packet = RedPacket(
        mchid=merchant.mchid,
        appid=appid,
        mch_billno=billno,
        detail_id="1000041701" + cst_format(now, "%Y%m%d") + world.rng.digits(12),
        openid=params["re_openid"],
        total_amount=amount,
        total_num=num,
        hb_type="GROUP" if group else "NORMAL",
        send_name=params["send_name"],
        wishing=params["wishing"],
        act_name=params["act_name"],
        remark=params["remark"],
        send_time=now,
        shares=split_group(world, amount, num) if group else [amount],
    )
    world.state.redpacks[(merchant.mchid, billno)] = packet
    move("redpack", packet, "SENT")
    arm_redpack_timer(world, packet)
    result = {
        "mch_billno": billno,
        "mch_id": merchant.mchid,
        "wxappid": appid,
        "re_openid": packet.openid,
        "total_amount": str(amount),
        "send_listid": packet.detail_id,
    }
    _store(world, merchant, "redpack", billno, params, result)
    return result


@bp.post("/mmpaymkttransfers/sendredpack")
@v2_endpoint("v2.sendredpack", required=REDPACK_FIELDS)
def sendredpack(world: World, merchant: Merchant, params: dict[str, str]) -> dict[str, Any]:
    """Normal cash red packet (§5.1); idempotent on mch_billno."""
    return _send(world, merchant, params, group=False)


@bp.post("/mmpaymkttransfers/sendgroupredpack")
@v2_endpoint("v2.sendgroupredpack", required=(*REDPACK_FIELDS, "amt_type"))
def sendgroupredpack(world: World, merchant: Merchant, params: dict[str, str]) -> dict[str, Any]:
    """Fission red packet (§5.3)."""
    return _send(world, merchant, params, group=True)


@bp.post("/mmpaymkttransfers/gethbinfo")
@v2_endpoint("v2.gethbinfo", required=("mch_billno", "appid", "bill_type"))
def gethbinfo(world: World, merchant: Merchant, params: dict[str, str]) -> dict[str, Any]:
    """Red packet record query (§5.5)."""
    if params["bill_type"] != "MCHT":
        raise V2Error("PARAM_ERROR", "bill_type须为MCHT")
    packet = world.state.redpacks.get((merchant.mchid, params["mch_billno"]))
    if packet is None or packet.appid != params["appid"]:
        raise V2Error("NOT_FOUND", "指定单号数据不存在")
    out = render_hbinfo(packet)
    if packet.status == "RECEIVED":
        out["hblist"] = [
            {
                "hbinfo": {
                    "openid": openid,
                    "amount": str(amount),
                    "rcv_time": cst_format(packet.rcv_time or 0, "%Y-%m-%d %H:%M:%S"),
                }
            }
            for openid, amount in _receivers(packet)
        ]
    return out


def _receivers(packet: RedPacket) -> list[tuple[str, int]]:
    """Who opened what: a group packet's seed first, then the friends who opened their shares (§5.5)."""
    if packet.hb_type == "NORMAL":
        return [(packet.openid, packet.total_amount)]
    return [
        (packet.openid if i == 0 else f"{packet.openid}-friend{i}", share)
        for i, share in enumerate(packet.shares[: max(packet.opened, 1)])
    ]


@bp.post("/mmpaymkttransfers/promotion/transfers")
@v2_endpoint(
    "v2.transfers",
    mch_field="mchid",
    required=("mch_appid", "partner_trade_no", "openid", "check_name", "amount", "desc"),
)
def transfers(world: World, merchant: Merchant, params: dict[str, str]) -> dict[str, Any]:
    """Legacy transfer to change (§6.3); idempotent on partner_trade_no."""
    no = params["partner_trade_no"]
    replay = _idem(world, merchant, "v2_transfer", no, params)
    if replay is not None:
        return replay
    appid = params["mch_appid"]
    if appid not in merchant.appids:
        raise V2Error("PARAM_ERROR", "mch_appid与商户号不匹配")
    if world.state.user_by_openid(appid, params["openid"]) is None:
        raise V2Error("OPENID_ERROR", "openid与mch_appid不匹配")
    if params["check_name"] not in ("NO_CHECK", "FORCE_CHECK"):
        raise V2Error("PARAM_ERROR", "check_name须为NO_CHECK或FORCE_CHECK")
    if params["check_name"] == "FORCE_CHECK" and not params.get("re_user_name"):
        raise V2Error("PARAM_ERROR", "FORCE_CHECK时re_user_name必填")
    amount = _amount(params, "amount")
    if amount < 30:
        raise V2Error("AMOUNT_LIMIT", "付款金额不能小于最低限额0.3元")
    if merchant.balance_fen < amount:
        raise V2Error("NOTENOUGH", "余额不足")
    merchant.balance_fen -= amount
    now = world.clock.now()
    transfer = V2Transfer(
        merchant.mchid,
        appid,
        no,
        "1000018301" + cst_format(now, "%Y%m%d") + world.rng.digits(12),
        params["openid"],
        amount,
        params["desc"],
        now,
    )
    world.state.v2_transfers[(merchant.mchid, no)] = transfer
    result = {
        "mch_appid": appid,
        "mchid": merchant.mchid,
        "partner_trade_no": no,
        "payment_no": transfer.payment_no,
        "payment_time": cst_format(now, "%Y-%m-%d %H:%M:%S"),
    }
    _store(world, merchant, "v2_transfer", no, params, result)
    return result


@bp.post("/mmpaymkttransfers/gettransferinfo")
@v2_endpoint("v2.gettransferinfo", required=("partner_trade_no", "appid"))
def gettransferinfo(world: World, merchant: Merchant, params: dict[str, str]) -> dict[str, Any]:
    """Transfer query (§6.3; field list UNVERIFIED)."""
    transfer = world.state.v2_transfers.get((merchant.mchid, params["partner_trade_no"]))
    if transfer is None or transfer.appid != params["appid"]:
        raise V2Error("NOT_FOUND", "指定单号数据不存在")
    return {
        "partner_trade_no": transfer.partner_trade_no,
        "mch_id": merchant.mchid,
        "appid": transfer.appid,
        "detail_id": transfer.payment_no,
        "status": transfer.status,
        "openid": transfer.openid,
        "payment_amount": str(transfer.amount),
        "transfer_time": cst_format(transfer.payment_time, "%Y-%m-%d %H:%M:%S"),
        "payment_time": cst_format(transfer.payment_time, "%Y-%m-%d %H:%M:%S"),
        "desc": transfer.desc,
    }
