"""Pay v3 merchant transfer bills HTTP surface (商家转账, protocol doc §6.1)."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, request

from wechat.sandbox import crypto
from wechat.sandbox.clock import rfc3339
from wechat.sandbox.payouts import accept_transfer_bill, cancel_transfer_bill, render_transfer_bill
from wechat.sandbox.state import Merchant, TransferBill
from wechat.sandbox.v3 import V3Error, V3Result, idempotent, int_field, param_error, require, v3_endpoint
from wechat.sandbox.world import World

bp = Blueprint("sandbox_transfer", __name__)

OUT_BILL_NO = re.compile(r"^[0-9A-Za-z]{5,32}$")
NAME_REQUIRED_FEN = 200_000  # user_name required from 2,000 yuan (§6.1)


def _decrypt_user_name(merchant: Merchant, ciphertext: str) -> str:
    serial = request.headers.get("Wechatpay-Serial", "")
    if serial == merchant.pubkey_id:
        key = merchant.pubkey_key
    elif serial.upper() == merchant.platform_serial:
        key = merchant.platform_key
    else:
        raise V3Error(
            400, "PARAM_ERROR", "加密敏感字段时须在Wechatpay-Serial中传入对应的平台证书序列号或公钥ID"
        )
    try:
        return crypto.rsa_oaep_decrypt(key, ciphertext)
    except ValueError as exc:
        raise V3Error(400, "PARAM_ERROR", "user_name 解密失败") from exc


@bp.post("/v3/fund-app/mch-transfer/transfer-bills")
@v3_endpoint("v3.transfer_bill")
def create(world: World, merchant: Merchant, body: dict[str, Any]) -> V3Result:
    """Start a transfer; usually WAIT_USER_CONFIRM with ``package_info`` (§6.1)."""
    require(body, "appid", "out_bill_no", "transfer_scene_id", "openid", "transfer_amount", "transfer_remark")
    amount = int_field(body, "transfer_amount")
    out_bill_no = str(body["out_bill_no"])
    if not OUT_BILL_NO.match(out_bill_no):
        raise param_error("out_bill_no", "out_bill_no must be 5-32 of [0-9A-Za-z]")
    if amount <= 0:
        raise param_error("transfer_amount", "transfer_amount must be > 0 fen")
    if body["appid"] not in merchant.appids:
        raise V3Error(400, "APPID_MCHID_NOT_MATCH", "appid与商户号不匹配")
    if world.state.user_by_openid(body["appid"], body["openid"]) is None:
        raise V3Error(400, "PARAM_ERROR", "openid与appid不匹配")
    if not body.get("transfer_scene_report_infos"):
        raise param_error("transfer_scene_report_infos", "该转账场景须报备 transfer_scene_report_infos")
    user_name = _decrypt_user_name(merchant, str(body["user_name"])) if body.get("user_name") else None
    if amount >= NAME_REQUIRED_FEN and user_name is None:
        raise param_error("user_name", "转账金额>=2000元时必须填写收款用户姓名")

    def run() -> V3Result:
        if merchant.balance_fen < amount:
            raise V3Error(403, "NOT_ENOUGH", "商户运营账户资金不足")
        now = world.clock.now()
        bill = TransferBill(
            mchid=merchant.mchid,
            appid=body["appid"],
            out_bill_no=out_bill_no,
            transfer_bill_no="1330" + world.rng.digits(36),
            openid=body["openid"],
            amount=amount,
            remark=str(body["transfer_remark"]),
            scene_id=str(body["transfer_scene_id"]),
            notify_url=body.get("notify_url") or merchant.notify_url,
            created_at=now,
            updated_at=now,
            user_name_plain=user_name,
        )
        accept_transfer_bill(world, merchant, bill)
        return 200, render_transfer_bill(bill, created=True)

    def current() -> V3Result:
        return 200, render_transfer_bill(
            world.state.transfer_bills[(merchant.mchid, out_bill_no)], created=True
        )

    # user_name is RSA-OAEP ciphertext (random per call): compare the plaintext instead.
    fp_body = {**body, "user_name": user_name}
    # Same out_bill_no with other parameters: production code UNVERIFIED — INVALID_REQUEST here.
    conflict = V3Error(400, "INVALID_REQUEST", "商户单号重复，且请求参数与原单不一致")
    return idempotent(world, merchant.mchid, "transfer_bill", out_bill_no, fp_body, conflict, run, current)


def _bill(world: World, merchant: Merchant, out_bill_no: str) -> TransferBill:
    bill = world.state.transfer_bills.get((merchant.mchid, out_bill_no))
    if bill is None:
        raise V3Error(404, "NOT_FOUND", "记录不存在")
    return bill


@bp.get("/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/<out_bill_no>")
@v3_endpoint("v3.transfer_bill_query")
def query(world: World, merchant: Merchant, body: dict[str, Any], out_bill_no: str) -> V3Result:
    """Query by merchant bill number."""
    return 200, render_transfer_bill(_bill(world, merchant, out_bill_no))


@bp.get("/v3/fund-app/mch-transfer/transfer-bills/transfer-bill-no/<transfer_bill_no>")
@v3_endpoint("v3.transfer_bill_query")
def query_by_id(world: World, merchant: Merchant, body: dict[str, Any], transfer_bill_no: str) -> V3Result:
    """Query by WeChat bill number."""
    for bill in world.state.transfer_bills.values():
        if bill.mchid == merchant.mchid and bill.transfer_bill_no == transfer_bill_no:
            return 200, render_transfer_bill(bill)
    raise V3Error(404, "NOT_FOUND", "记录不存在")


@bp.post("/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/<out_bill_no>/cancel")
@v3_endpoint("v3.transfer_bill_cancel")
def cancel(world: World, merchant: Merchant, body: dict[str, Any], out_bill_no: str) -> V3Result:
    """Cancel before the user confirms; success only means "accepted" (§6.1)."""
    bill = _bill(world, merchant, out_bill_no)
    if bill.state in ("ACCEPTED", "WAIT_USER_CONFIRM"):
        cancel_transfer_bill(world, bill)
    elif bill.state not in ("CANCELING", "CANCELLED"):
        raise V3Error(400, "INVALID_REQUEST", f"转账单状态为{bill.state}，不允许撤销")
    return 200, {
        "out_bill_no": bill.out_bill_no,
        "transfer_bill_no": bill.transfer_bill_no,
        "state": bill.state,
        "update_time": rfc3339(bill.updated_at),
    }
