"""State machines driven by the clock and admin actions: vouchers, transfers, orders, signing modes."""

from __future__ import annotations

from typing import Any

from tests.wechat.sandbox.conftest import NOTIFY_URL, Env, v3_call, verify_v3_response
from wechat.sandbox.clock import rfc3339

INFOS = [{"info_type": "活动名称", "info_content": "返利"}]


def _setup(env: Env, **kw: Any) -> tuple[dict[str, Any], dict[str, Any], str]:
    merchant = env.merchant(balance_fen=50_000, **kw)
    app = env.mini_program(merchant["mchid"])
    return merchant, app, env.user()["openids"][app["appid"]]


def test_voucher_limits_and_expiry(env: Env) -> None:
    merchant, app, openid = _setup(env)
    now = env.world.clock.now()
    stock = {
        "stock_name": "满10减1",
        "belong_merchant": merchant["mchid"],
        "stock_type": "NORMAL",
        "available_begin_time": rfc3339(now),
        "available_end_time": rfc3339(now + 3600),
        "stock_use_rule": {"max_coupons": 2, "max_amount": 200, "max_coupons_per_user": 1},
        "coupon_use_rule": {"fixed_normal_coupon": {"coupon_amount": 100, "transaction_minimum": 1000}},
        "out_request_no": "STOCK0001",
    }
    stock_id = v3_call(env, merchant, "POST", "/v3/marketing/favor/coupon-stocks", stock).json()["stock_id"]
    send = {
        "stock_id": stock_id,
        "out_request_no": "SEND0001",
        "appid": app["appid"],
        "stock_creator_mchid": merchant["mchid"],
    }
    path = f"/v3/marketing/favor/users/{openid}/coupons"
    not_running = v3_call(env, merchant, "POST", path, send)
    assert (not_running.status_code, not_running.json()["code"]) == (403, "RULE_LIMIT")
    v3_call(
        env,
        merchant,
        "POST",
        f"/v3/marketing/favor/stocks/{stock_id}/start",
        {"stock_creator_mchid": merchant["mchid"]},
    )
    coupon_id = v3_call(env, merchant, "POST", path, send).json()["coupon_id"]
    assert v3_call(env, merchant, "POST", path, send).json()["coupon_id"] == coupon_id  # idempotent
    second = v3_call(env, merchant, "POST", path, {**send, "out_request_no": "SEND0002"})
    assert (second.status_code, second.json()["code"]) == (403, "RULE_LIMIT")  # one per user
    query = f"/v3/marketing/favor/users/{openid}/coupons/{coupon_id}?appid={app['appid']}"
    assert v3_call(env, merchant, "GET", query).json()["status"] == "SENDED"
    env.advance(3601)
    assert v3_call(env, merchant, "GET", query).json()["status"] == "EXPIRED"


def test_transfer_bill_overdue_and_reject(env: Env) -> None:
    merchant, app, openid = _setup(env)
    path = "/v3/fund-app/mch-transfer/transfer-bills"
    for no in ("OVERDUE0001", "REJECT00001"):
        body = {
            "appid": app["appid"],
            "out_bill_no": no,
            "transfer_scene_id": "1000",
            "openid": openid,
            "transfer_amount": 1000,
            "transfer_remark": "返利",
            "transfer_scene_report_infos": INFOS,
            "notify_url": NOTIFY_URL,
        }
        assert v3_call(env, merchant, "POST", path, body).json()["state"] == "WAIT_USER_CONFIRM"
    assert env.world.state.merchants[merchant["mchid"]].balance_fen == 48_000
    env.post("/transfer-bills/REJECT00001/reject", {"fail_reason": "TRANSFER_RISK"})
    env.advance(24 * 3600)
    states = {
        n["resource"]["out_bill_no"]: (n["resource"]["state"], n["resource"].get("fail_reason"))
        for n in env.notifications(event_type="MCHTRANSFER.BILL.FINISHED")
    }
    assert states == {"REJECT00001": ("FAIL", "TRANSFER_RISK"), "OVERDUE0001": ("CANCELLED", "OVERDUE_CLOSE")}
    assert env.world.state.merchants[merchant["mchid"]].balance_fen == 50_000
    cancel = v3_call(env, merchant, "POST", f"{path}/out-bill-no/REJECT00001/cancel")
    assert (cancel.status_code, cancel.json()["code"]) == (400, "INVALID_REQUEST")


def test_transfer_without_confirmation_succeeds_by_itself(env: Env) -> None:
    merchant, app, openid = _setup(env, transfer_confirm=False)
    body = {
        "appid": app["appid"],
        "out_bill_no": "AUTO0000001",
        "transfer_scene_id": "1000",
        "openid": openid,
        "transfer_amount": 100,
        "transfer_remark": "返利",
        "transfer_scene_report_infos": INFOS,
    }
    created = v3_call(env, merchant, "POST", "/v3/fund-app/mch-transfer/transfer-bills", body).json()
    assert created["state"] == "ACCEPTED"
    assert "package_info" not in created
    env.advance(2)
    query = v3_call(
        env,
        merchant,
        "GET",
        "/v3/fund-app/mch-transfer/transfer-bills/transfer-bill-no/" + created["transfer_bill_no"],
    )
    assert query.json()["state"] == "SUCCESS"


def test_payerror_then_close_and_prepay_expiry(env: Env) -> None:
    merchant, app, openid = _setup(env)
    order = {
        "appid": app["appid"],
        "mchid": merchant["mchid"],
        "description": "d",
        "notify_url": NOTIFY_URL,
        "amount": {"total": 100},
        "payer": {"openid": openid},
    }
    v3_call(env, merchant, "POST", "/v3/pay/transactions/jsapi", {**order, "out_trade_no": "FAIL000001"})
    env.post("/transactions/FAIL000001/fail")
    q = f"/v3/pay/transactions/out-trade-no/FAIL000001?mchid={merchant['mchid']}"
    assert v3_call(env, merchant, "GET", q).json()["trade_state"] == "PAYERROR"
    assert (
        v3_call(
            env,
            merchant,
            "POST",
            "/v3/pay/transactions/out-trade-no/FAIL000001/close",
            {"mchid": merchant["mchid"]},
        ).status_code
        == 204
    )
    assert v3_call(env, merchant, "GET", q).json()["trade_state"] == "CLOSED"
    assert env.notifications() == []

    v3_call(env, merchant, "POST", "/v3/pay/transactions/jsapi", {**order, "out_trade_no": "LATE000001"})
    env.advance(7201)
    resp = env.admin.post("/_sandbox/transactions/LATE000001/pay", json={})
    assert resp.status_code == 409
    assert resp.get_json()["error"]["code"] == "ORDER_CLOSED"


def test_mixed_mode_notifications_use_both_keys(env: Env) -> None:
    merchant, app, openid = _setup(env, sign_mode="mixed")
    order = {
        "appid": app["appid"],
        "mchid": merchant["mchid"],
        "description": "d",
        "notify_url": NOTIFY_URL,
        "amount": {"total": 100},
        "payer": {"openid": openid},
    }
    for i in range(12):
        v3_call(
            env, merchant, "POST", "/v3/pay/transactions/jsapi", {**order, "out_trade_no": f"MIX00000{i:02d}"}
        )
        env.post(f"/transactions/MIX00000{i:02d}/pay")
    serials = {got["headers"]["Wechatpay-Serial"] for got in env.inbox.received}
    assert serials == {merchant["platform_serial"], merchant["public_key_id"]}
    resp = v3_call(
        env, merchant, "GET", f"/v3/pay/transactions/out-trade-no/MIX0000000?mchid={merchant['mchid']}"
    )
    assert resp.headers["Wechatpay-Serial"] == merchant["platform_serial"]  # responses follow the request
    assert verify_v3_response(merchant, resp)


def test_public_key_only_merchant_has_no_certificates(env: Env) -> None:
    merchant, _, _ = _setup(env, platform_certificates=False)
    resp = v3_call(env, merchant, "GET", "/v3/certificates")
    assert (resp.status_code, resp.json()["code"]) == (404, "RESOURCE_NOT_EXISTS")
    assert resp.headers["Wechatpay-Serial"] == merchant["public_key_id"]


def test_user_name_encrypted_with_platform_certificate(env: Env) -> None:
    from wechat.sandbox import crypto

    merchant, app, openid = _setup(env)
    cipher = crypto.rsa_oaep_encrypt(crypto.load_public_key(merchant["platform_certificate_pem"]), "李四")
    body = {
        "appid": app["appid"],
        "out_bill_no": "NAME0000001",
        "transfer_scene_id": "1000",
        "openid": openid,
        "transfer_amount": 200_000,
        "transfer_remark": "返利",
        "transfer_scene_report_infos": INFOS,
        "user_name": cipher,
    }
    env.post(f"/merchants/{merchant['mchid']}/topup", {"amount_fen": 200_000})
    path = "/v3/fund-app/mch-transfer/transfer-bills"
    missing_serial = v3_call(env, merchant, "POST", path, body)
    assert (missing_serial.status_code, missing_serial.json()["code"]) == (400, "PARAM_ERROR")
    ok = v3_call(env, merchant, "POST", path, body, headers={"Wechatpay-Serial": merchant["platform_serial"]})
    assert ok.status_code == 200, ok.text
    assert env.world.state.transfer_bills[(merchant["mchid"], "NAME0000001")].user_name_plain == "李四"
    no_name = v3_call(env, merchant, "POST", path, {**body, "out_bill_no": "NAME0000002", "user_name": None})
    assert (no_name.status_code, no_name.json()["detail"]["field"]) == (400, "user_name")
