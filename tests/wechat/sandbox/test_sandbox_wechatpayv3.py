"""Independent-implementation check: the third-party ``wechatpayv3`` SDK talks to the sandbox.

wechatpayv3 hard-codes ``https://api.mch.weixin.qq.com`` (``Core.__init__``); ``responses`` intercepts that
host and hands the request to the sandbox WSGI app, so no SDK internals are patched. Every 2xx the SDK accepts
has passed its own signature verification; notifications are verified and decrypted by ``WeChatPay.callback``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from wechatpayv3 import WeChatPay, WeChatPayType

from tests.wechat.sandbox.conftest import NOTIFY_URL, Env


def _setup(env: Env, **merchant_kw: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    merchant = env.merchant(balance_fen=1_000_000, **merchant_kw)
    app = env.mini_program(merchant["mchid"])
    user = env.user(nickname="Sandbox Tester")
    return merchant, app, user


def _sdk(merchant: dict[str, Any], appid: str, *, public_key: bool = False) -> WeChatPay:
    extra: dict[str, Any] = {}
    if public_key:
        extra = {"public_key": merchant["public_key_pem"], "public_key_id": merchant["public_key_id"]}
    return WeChatPay(
        wechatpay_type=WeChatPayType.MINIPROG,
        mchid=merchant["mchid"],
        private_key=merchant["merchant_private_key_pem"],
        cert_serial_no=merchant["merchant_serial"],
        appid=appid,
        apiv3_key=merchant["apiv3_key"],
        notify_url=NOTIFY_URL,
        **extra,
    )


def _last_callback(env: Env, sdk: WeChatPay) -> dict[str, Any]:
    got = env.inbox.received[-1]
    result = sdk.callback(got["headers"], got["body"])
    assert result is not None, "wechatpayv3 refused the sandbox notification"
    return dict(result)


@pytest.mark.parametrize("public_key", [False, True], ids=["platform-cert", "public-key"])
def test_prepay_query_pay_notify_refund_close(env: Env, public_key: bool) -> None:
    merchant, app, user = _setup(env, sign_mode="public_key" if public_key else "platform")
    openid = user["openids"][app["appid"]]
    sdk = _sdk(merchant, app["appid"], public_key=public_key)

    code, text = sdk.pay(
        description="Hongli test order",
        out_trade_no="HL20261124000001",
        amount={"total": 1999},
        payer={"openid": openid},
    )
    assert code == 200
    assert json.loads(text)["prepay_id"].startswith("wx")

    code, text = sdk.query(out_trade_no="HL20261124000001")
    assert code == 200
    assert json.loads(text)["trade_state"] == "NOTPAY"

    env.post("/transactions/HL20261124000001/pay")
    note = _last_callback(env, sdk)
    assert note["event_type"] == "TRANSACTION.SUCCESS"
    assert note["resource"]["trade_state"] == "SUCCESS"
    assert note["resource"]["amount"]["total"] == 1999
    expected_serial = merchant["public_key_id"] if public_key else merchant["platform_serial"]
    assert env.inbox.received[-1]["headers"]["Wechatpay-Serial"] == expected_serial

    code, text = sdk.query(transaction_id=note["resource"]["transaction_id"])
    assert code == 200
    assert json.loads(text)["trade_state"] == "SUCCESS"

    code, text = sdk.refund(
        out_refund_no="RF20261124000001",
        amount={"refund": 500, "total": 1999, "currency": "CNY"},
        out_trade_no="HL20261124000001",
    )
    assert code == 200
    assert json.loads(text)["status"] == "PROCESSING"
    env.advance(10)
    note = _last_callback(env, sdk)
    assert note["event_type"] == "REFUND.SUCCESS"
    assert note["resource"]["refund_status"] == "SUCCESS"
    code, text = sdk.query_refund(out_refund_no="RF20261124000001")
    assert json.loads(text)["status"] == "SUCCESS"

    code, _ = sdk.pay(
        description="to close",
        out_trade_no="HL20261124000002",
        amount={"total": 100},
        payer={"openid": openid},
    )
    assert code == 200
    code, text = sdk.close(out_trade_no="HL20261124000002")
    assert (code, text) == (204, b"")
    code, text = sdk.query(out_trade_no="HL20261124000002")
    assert json.loads(text)["trade_state"] == "CLOSED"


# Public-key mode: wechatpayv3 2.0.4 then encrypts ``user_name`` with the WeChat Pay public key. (In
# platform-certificate mode it reads cryptography's deprecated naive ``not_valid_after``, a warning this suite
# turns into an error; the sandbox's platform-key decryption is covered by test_sandbox_lifecycles.)
def test_transfer_bill_with_encrypted_name_confirm_and_cancel(env: Env) -> None:
    merchant, app, user = _setup(env, sign_mode="public_key")
    openid = user["openids"][app["appid"]]
    sdk = _sdk(merchant, app["appid"], public_key=True)
    infos = [
        {"info_type": "活动名称", "info_content": "双向返利"},
        {"info_type": "奖励说明", "info_content": "返利提现"},
    ]

    code, text = sdk.mch_transfer_bills(
        out_bill_no="TB20261124000001",
        transfer_scene_id="1000",
        openid=openid,
        transfer_amount=888,
        transfer_remark="返利提现",
        user_name="张三",
        transfer_scene_report_infos=infos,
    )
    assert code == 200, text
    created = json.loads(text)
    assert created["state"] == "WAIT_USER_CONFIRM"
    assert created["package_info"]
    assert env.world.state.transfer_bills[(merchant["mchid"], "TB20261124000001")].user_name_plain == "张三"

    env.post("/transfer-bills/TB20261124000001/confirm")
    note = _last_callback(env, sdk)
    assert note["event_type"] == "MCHTRANSFER.BILL.FINISHED"
    assert note["resource"]["state"] == "SUCCESS"
    code, text = sdk.mch_transfer_bills_query(out_bill_no="TB20261124000001")
    assert json.loads(text)["state"] == "SUCCESS"

    code, text = sdk.mch_transfer_bills(
        out_bill_no="TB20261124000002",
        transfer_scene_id="1000",
        openid=openid,
        transfer_amount=300,
        transfer_remark="返利提现",
        transfer_scene_report_infos=infos,
    )
    assert code == 200
    code, text = sdk.mch_transfer_bills_cancel(out_bill_no="TB20261124000002")
    assert code == 200
    assert json.loads(text)["state"] == "CANCELING"
    env.advance(2)
    assert _last_callback(env, sdk)["resource"]["state"] == "CANCELLED"
    code, text = sdk.mch_transfer_bills_query(out_bill_no="TB20261124000002")
    assert json.loads(text)["state"] == "CANCELLED"
    assert env.world.state.merchants[merchant["mchid"]].balance_fen == 1_000_000 - 888


def test_vouchers_and_trade_bill(env: Env) -> None:
    merchant, app, user = _setup(env, coupon_notify_url=NOTIFY_URL)
    openid = user["openids"][app["appid"]]
    sdk = _sdk(merchant, app["appid"])
    code, text = sdk.marketing_favor_stock_create(
        stock_name="返利券",
        belong_merchant=merchant["mchid"],
        available_begin_time="2026-11-24T00:00:00+08:00",
        available_end_time="2026-12-24T00:00:00+08:00",
        stock_use_rule={"max_coupons": 10, "max_amount": 1000, "max_coupons_per_user": 1},
        coupon_use_rule={"fixed_normal_coupon": {"coupon_amount": 100, "transaction_minimum": 500}},
        out_request_no=f"{merchant['mchid']}20261124001",
    )
    assert code == 200, text
    stock_id = json.loads(text)["stock_id"]
    code, text = sdk.marketing_favor_stock_start(stock_creator_mchid=merchant["mchid"], stock_id=stock_id)
    assert code == 200, text
    code, text = sdk.marketing_favor_stock_send(
        stock_id=stock_id,
        openid=openid,
        out_request_no=f"{merchant['mchid']}20261124002",
        stock_creator_mchid=merchant["mchid"],
    )
    assert code == 200, text
    coupon_id = json.loads(text)["coupon_id"]

    sdk.pay(
        description="with coupon",
        out_trade_no="HL20261124000009",
        amount={"total": 1000},
        payer={"openid": openid},
    )
    env.post("/transactions/HL20261124000009/pay", {"coupon_id": coupon_id})
    events = {n["event_type"] for n in env.notifications()}
    assert events == {"TRANSACTION.SUCCESS", "COUPON.USE"}
    for got in env.inbox.received:
        assert sdk.callback(got["headers"], got["body"]) is not None
    code, text = sdk.marketing_favor_coupon_detail(coupon_id=coupon_id, openid=openid)
    assert json.loads(text)["status"] == "USED"

    env.advance(86400)
    code, text = sdk.trade_bill(bill_date="2026-11-24")
    assert code == 200, text
    bill = json.loads(text)
    code, content = sdk.download_bill(bill["download_url"])
    assert code == 200
    import gzip
    import hashlib

    raw = gzip.decompress(content)
    assert hashlib.sha1(raw).hexdigest() == bill["hash_value"]  # noqa: S324 - protocol hash
    assert "`HL20261124000009" in raw.decode()
