"""The sandbox's coupons: WeChat Pay applies the user's voucher at checkout (wechatpayv3 as the merchant's
independent client); merchant coupons (商家券) with NO_AUTH for merchants without them, the send-coupon
plugin's APIv2 signature (checked against the public v2 vectors), COUPON.SEND, use, return, deactivate."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from wechatpayv3 import WeChatPay, WeChatPayType

from tests.wechat.sandbox.conftest import NOTIFY_URL, START, Env, v3_call
from wechat.coupons import PluginCoupon, plugin_sign, send_coupon_params, verify_plugin_sign
from wechat.crypto import V2_HMAC, V2_MD5, v2_sign
from wechat.sandbox import crypto as sb_crypto
from wechat.sandbox.clock import rfc3339

VECTOR_KEY = "192006250b4c09247ec02edce69f6a2d"  # wechat-test-vectors.md §7


def test_the_plugin_signature_is_the_v2_hmac_of_the_vectors() -> None:
    # §7a and §7b: the APIv2 algorithm the plugin's sign uses, on the published parameters.
    doc = {"appid": "wxd930ea5d5a258f4f", "mch_id": "10000100", "device_info": "1000", "body": "test",
           "nonce_str": "ibuaiVcKdpRxkhJA"}  # fmt: skip
    assert v2_sign(doc, VECTOR_KEY, V2_MD5) == "9A0A8659F005D6984697E2CA0A9CF3B7"
    assert (
        v2_sign(doc, VECTOR_KEY, V2_HMAC)
        == "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
    )
    pair = {"test1": "test1", "test2": "test2"}
    assert (
        v2_sign(pair, VECTOR_KEY, V2_HMAC)
        == "EDAC6D70D2FDF5A2382F8204FC96A1918017E46ACC5297F565ED1A7610ACF659"
    )
    assert sb_crypto.v2_sign(pair, VECTOR_KEY, "HMAC-SHA256") == v2_sign(pair, VECTOR_KEY, V2_HMAC)

    # The plugin's parameters, flattened with an index and sorted, then "&key=" (written out by hand here).
    coupons = [
        PluginCoupon("1212000001", "1900000109202612070001", "HL0000000001"),
        PluginCoupon("9856000", "R2"),
    ]
    message = (
        "coupon_code0=HL0000000001&out_request_no0=1900000109202612070001&out_request_no1=R2"
        "&send_coupon_merchant=1900000109&stock_id0=1212000001&stock_id1=9856000"
    )
    expected = hmac.new(
        VECTOR_KEY.encode(), f"{message}&key={VECTOR_KEY}".encode(), hashlib.sha256
    ).hexdigest()
    assert plugin_sign(coupons, "1900000109", VECTOR_KEY) == expected.upper()
    params = send_coupon_params(coupons, "1900000109", VECTOR_KEY)
    assert params["send_coupon_params"][1] == {"stock_id": "9856000", "out_request_no": "R2"}
    assert verify_plugin_sign(params, VECTOR_KEY)
    assert not verify_plugin_sign(params | {"sign": params["sign"][:-1] + "0"}, VECTOR_KEY)
    assert not verify_plugin_sign(params | {"send_coupon_merchant": "1900000110"}, VECTOR_KEY)


def _sdk(merchant: dict[str, Any], appid: str) -> WeChatPay:
    return WeChatPay(
        wechatpay_type=WeChatPayType.MINIPROG,
        mchid=merchant["mchid"],
        private_key=merchant["merchant_private_key_pem"],
        cert_serial_no=merchant["merchant_serial"],
        appid=appid,
        apiv3_key=merchant["apiv3_key"],
        notify_url=NOTIFY_URL,
    )


def test_checkout_applies_the_users_voucher_with_wechatpayv3(env: Env) -> None:
    merchant = env.merchant(balance_fen=0, coupon_notify_url=NOTIFY_URL)
    app = env.mini_program(merchant["mchid"])
    openid = env.user(nickname="Voucher")["openids"][app["appid"]]
    sdk = _sdk(merchant, app["appid"])
    code, text = sdk.marketing_favor_stock_create(
        stock_name="满50减10",
        belong_merchant=merchant["mchid"],
        available_begin_time=rfc3339(START - 60),
        available_end_time=rfc3339(START + 30 * 86400),
        stock_use_rule={"max_coupons": 2, "max_amount": 2000, "max_coupons_per_user": 2},
        coupon_use_rule={"fixed_normal_coupon": {"coupon_amount": 1000, "transaction_minimum": 5000}},
        out_request_no=f"{merchant['mchid']}20261124101",
    )
    assert code == 200, text
    stock_id = json.loads(text)["stock_id"]
    assert sdk.marketing_favor_stock_start(stock_creator_mchid=merchant["mchid"], stock_id=stock_id)[0] == 200
    code, text = sdk.marketing_favor_stock_send(
        stock_id=stock_id, openid=openid, out_request_no="R-1", stock_creator_mchid=merchant["mchid"]
    )
    assert code == 200, text
    coupon_id = json.loads(text)["coupon_id"]
    # The same out_request_no again: the same coupon (WeChat's idempotent re-entry), not a second one.
    again = sdk.marketing_favor_stock_send(
        stock_id=stock_id, openid=openid, out_request_no="R-1", stock_creator_mchid=merchant["mchid"]
    )
    assert json.loads(again[1])["coupon_id"] == coupon_id

    # Below the minimum: paid in full, the voucher stays in the card pack.
    sdk.pay(
        description="small", out_trade_no="HL20261124000101", amount={"total": 4999}, payer={"openid": openid}
    )
    paid = env.post("/transactions/HL20261124000101/pay", {})
    assert paid["amount"]["payer_total"] == 4999 and "promotion_detail" not in paid
    # At the minimum: WeChat applies it without being told which.
    sdk.pay(
        description="big", out_trade_no="HL20261124000102", amount={"total": 5000}, payer={"openid": openid}
    )
    paid = env.post("/transactions/HL20261124000102/pay", {})
    assert (paid["amount"]["total"], paid["amount"]["payer_total"]) == (5000, 4000)
    (line,) = paid["promotion_detail"]
    assert (line["coupon_id"], line["amount"], line["merchant_contribute"], line["type"]) == (
        coupon_id,
        1000,
        1000,
        "CASH",
    )
    assert env.world.state.merchants[merchant["mchid"]].balance_fen == 4999 + 5000  # 预充值: settled in full
    events = [n["event_type"] for n in env.notifications()]
    assert events == ["TRANSACTION.SUCCESS", "TRANSACTION.SUCCESS", "COUPON.USE"]
    use = sdk.callback(env.inbox.received[-1]["headers"], env.inbox.received[-1]["body"])
    assert (
        use is not None and use["resource"]["consume_information"]["transaction_id"] == paid["transaction_id"]
    )
    code, text = sdk.marketing_favor_coupon_detail(coupon_id=coupon_id, openid=openid)
    assert json.loads(text)["status"] == "USED"
    pack = env.admin.get(
        f"/_sandbox/users/{env.world.state.user_by_openid(app['appid'], openid).id}/card-pack"
    )  # type: ignore[union-attr]
    assert [(v["coupon_id"], v["status"]) for v in pack.get_json()["vouchers"]] == [(coupon_id, "USED")]


def _busifavor_stock(env: Env, merchant: dict[str, Any], appid: str, **rule: Any) -> Any:
    body = {
        "stock_name": "满100减20",
        "belong_merchant": merchant["mchid"],
        "goods_name": "全场",
        "stock_type": "NORMAL",
        "coupon_use_rule": {
            "coupon_available_time": {
                "available_begin_time": rfc3339(START - 60),
                "available_end_time": rfc3339(START + rule.pop("days", 30) * 86400),
            },
            "fixed_normal_coupon": {"discount_amount": 2000, "transaction_minimum": 10000},
            "use_method": "MINI_PROGRAMS",
            "mini_programs_appid": appid,
            "mini_programs_path": "pages/index/index",
        },
        "stock_send_rule": {"max_coupons": 5, "max_coupons_per_user": 1},
        "coupon_code_mode": "MERCHANT_API",
        "out_request_no": f"{merchant['mchid']}S1",
    }
    return v3_call(env, merchant, "POST", "/v3/marketing/busifavor/stocks", body)


def test_merchant_coupons_need_the_product_and_the_plugins_signature(env: Env) -> None:
    merchant = env.merchant(balance_fen=0)
    app = env.mini_program(merchant["mchid"])
    user = env.user(id="mc", nickname="MC")
    openid = user["openids"][app["appid"]]

    refused = _busifavor_stock(env, merchant, app["appid"])
    assert (refused.status_code, refused.json()["code"]) == (403, "NO_AUTH")
    env.post(f"/merchants/{merchant['mchid']}/busifavor", {"enabled": True})
    made = _busifavor_stock(env, merchant, app["appid"])
    assert made.status_code == 200, made.text
    stock_id = made.json()["stock_id"]
    callback = v3_call(
        env,
        merchant,
        "POST",
        "/v3/marketing/busifavor/callbacks",
        {"mchid": merchant["mchid"], "notify_url": NOTIFY_URL},
    )
    assert callback.status_code == 200

    coupons = [PluginCoupon(stock_id, "SEND-1", "HL0000000001")]
    params = send_coupon_params(coupons, merchant["mchid"], merchant["v2_key"])
    forged = params | {"sign": plugin_sign(coupons, merchant["mchid"], "x" * 32)}
    answer = env.admin.post("/_sandbox/users/mc/send-coupon", json={"appid": app["appid"], **forged})
    assert answer.status_code >= 400 and env.notifications(event_type="COUPON.SEND") == []
    claimed = env.post("/users/mc/send-coupon", {"appid": app["appid"], **params})
    assert claimed["send_coupon_result"][0]["code"] == "SUCCESS"
    (send,) = env.notifications(event_type="COUPON.SEND")
    assert send["resource"]["coupon_code"] == "HL0000000001" and send["resource"]["openid"] == openid

    use = {"coupon_code": "HL0000000001", "stock_id": stock_id, "appid": app["appid"], "openid": openid,
           "use_time": rfc3339(START), "use_request_no": "USE-1"}  # fmt: skip
    first = v3_call(env, merchant, "POST", "/v3/marketing/busifavor/coupons/use", use)
    assert first.status_code == 200, first.text
    assert v3_call(env, merchant, "POST", "/v3/marketing/busifavor/coupons/use", use).json() == first.json()
    twice = v3_call(
        env, merchant, "POST", "/v3/marketing/busifavor/coupons/use", use | {"use_request_no": "USE-2"}
    )
    assert (twice.status_code, twice.json()["code"]) == (400, "INVALID_REQUEST")
    back = {"coupon_code": "HL0000000001", "stock_id": stock_id, "return_request_no": "RET-1"}
    assert v3_call(env, merchant, "POST", "/v3/marketing/busifavor/coupons/return", back).status_code == 200
    off = {
        "coupon_code": "HL0000000001",
        "stock_id": stock_id,
        "deactivate_request_no": "OFF-1",
        "deactivate_reason": "revoked",
    }
    assert (
        v3_call(env, merchant, "POST", "/v3/marketing/busifavor/coupons/deactivate", off).status_code == 200
    )
    late = v3_call(
        env, merchant, "POST", "/v3/marketing/busifavor/coupons/use", use | {"use_request_no": "USE-3"}
    )
    assert late.status_code == 400 and "DEACTIVATED" in late.json()["message"]
    pack = env.admin.get("/_sandbox/users/mc/card-pack").get_json()
    assert [(c["coupon_code"], c["coupon_state"]) for c in pack["merchant_coupons"]] == [
        ("HL0000000001", "DEACTIVATED")
    ]
