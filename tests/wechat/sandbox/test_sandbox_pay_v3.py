"""Pay v3 behaviour: signature checks, idempotency, faults, notification delivery and retries."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from tests.wechat.sandbox.conftest import NOTIFY_URL, Env, make_env, v3_call, verify_v3_response
from wechat.sandbox.notify import V3_RETRY_S


def _order(
    merchant: dict[str, Any], app: dict[str, Any], openid: str, no: str, total: int = 100
) -> dict[str, Any]:
    return {
        "appid": app["appid"],
        "mchid": merchant["mchid"],
        "description": "测试商品",
        "out_trade_no": no,
        "notify_url": NOTIFY_URL,
        "amount": {"total": total, "currency": "CNY"},
        "payer": {"openid": openid},
    }


@pytest.fixture
def shop(env: Env) -> tuple[Env, dict[str, Any], dict[str, Any], str]:
    merchant = env.merchant(balance_fen=100_000)
    app = env.mini_program(merchant["mchid"])
    user = env.user()
    return env, merchant, app, user["openids"][app["appid"]]


JSAPI = "/v3/pay/transactions/jsapi"


def test_signed_request_accepted_and_response_signed(shop: Any) -> None:
    env, merchant, app, openid = shop
    resp = v3_call(env, merchant, "POST", JSAPI, _order(merchant, app, openid, "ORDER000001"))
    assert resp.status_code == 200
    assert resp.headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    assert resp.headers["Request-ID"]
    assert verify_v3_response(merchant, resp)


def test_public_key_serial_in_request_selects_public_key_signature(shop: Any) -> None:
    env, merchant, _app, _openid = shop
    resp = v3_call(
        env,
        merchant,
        "GET",
        "/v3/pay/transactions/out-trade-no/NOPE00001?mchid=" + merchant["mchid"],
        headers={"Wechatpay-Serial": merchant["public_key_id"]},
    )
    assert resp.status_code == 404
    assert resp.headers["Wechatpay-Serial"] == merchant["public_key_id"]
    assert verify_v3_response(merchant, resp)


@pytest.mark.parametrize(
    ("kwargs", "issue"),
    [
        # Offsets, not instants: parameters are built at collection, long before a late test runs.
        ({"timestamp": -301}, "timestamp"),
        ({"timestamp": 400}, "timestamp"),
        ({"serial": "0" * 40}, "serial_no"),
    ],
    ids=["stale", "future", "wrong-serial"],
)
def test_signature_refusals(shop: Any, kwargs: dict[str, Any], issue: str) -> None:
    env, merchant, app, openid = shop
    if "timestamp" in kwargs:
        kwargs = {"timestamp": int(time.time()) + kwargs["timestamp"]}
    resp = v3_call(env, merchant, "POST", JSAPI, _order(merchant, app, openid, "ORDER000002"), **kwargs)
    assert resp.status_code == 401
    assert resp.json()["code"] == "SIGN_ERROR"
    assert resp.json()["detail"]["field"] == issue
    assert "ORDER000002" not in str(env.world.state.orders)


def test_bad_signature_refused_with_debuggable_detail(shop: Any, key_pool: Any) -> None:
    env, merchant, _app, _openid = shop
    from wechat.sandbox.crypto import private_key_pem

    other = private_key_pem(key_pool[-1])
    resp = v3_call(
        env,
        merchant,
        "GET",
        f"/v3/pay/transactions/out-trade-no/X123456?mchid={merchant['mchid']}",
        key_pem=other,
    )
    assert resp.status_code == 401
    body = resp.json()
    assert body["code"] == "SIGN_ERROR"
    info = body["detail"]["sign_information"]
    assert info["url"] == f"/v3/pay/transactions/out-trade-no/X123456?mchid={merchant['mchid']}"
    assert info["truncated_sign_message"].startswith("GET\n/v3/pay/transactions/out-trade-no/X123456?mchid=")


def test_tampered_body_refused(shop: Any) -> None:
    env, merchant, app, openid = shop
    good = v3_call(env, merchant, "POST", JSAPI, _order(merchant, app, openid, "ORDER000003"))
    assert good.status_code == 200
    req = requests.Request(
        "POST",
        "https://api.mch.weixin.qq.com" + JSAPI,
        data=b'{"tampered":true}',
        headers={"Authorization": "WECHATPAY2-SHA256-RSA2048 x"},
    )
    resp = requests.Session().send(req.prepare(), timeout=5)
    assert resp.status_code == 401


def test_appid_mchid_binding_and_required_fields(shop: Any) -> None:
    env, merchant, app, openid = shop
    other_app = env.mini_program(env.merchant()["mchid"])
    resp = v3_call(
        env,
        merchant,
        "POST",
        JSAPI,
        {**_order(merchant, app, openid, "ORDER000004"), "appid": other_app["appid"]},
    )
    assert (resp.status_code, resp.json()["code"]) == (400, "APPID_MCHID_NOT_MATCH")
    body = _order(merchant, app, openid, "ORDER000005")
    del body["description"]
    resp = v3_call(env, merchant, "POST", JSAPI, body)
    assert (resp.status_code, resp.json()["code"]) == (400, "PARAM_ERROR")
    assert resp.json()["detail"]["field"] == "description"
    resp = v3_call(
        env,
        merchant,
        "POST",
        JSAPI,
        {**_order(merchant, app, openid, "ORDER000006"), "amount": {"total": 1.5}},
    )
    assert resp.status_code == 400


def test_idempotency_replay_and_conflict(shop: Any) -> None:
    env, merchant, app, openid = shop
    order = _order(merchant, app, openid, "ORDER000010")
    first = v3_call(env, merchant, "POST", JSAPI, order)
    again = v3_call(env, merchant, "POST", JSAPI, dict(reversed(list(order.items()))))
    assert first.json() == again.json()
    conflict = v3_call(env, merchant, "POST", JSAPI, {**order, "amount": {"total": 101, "currency": "CNY"}})
    assert (conflict.status_code, conflict.json()["code"]) == (403, "OUT_TRADE_NO_USED")
    env.post("/transactions/ORDER000010/pay")
    paid = v3_call(env, merchant, "POST", JSAPI, order)
    assert (paid.status_code, paid.json()["code"]) == (400, "ORDERPAID")

    refund = {
        "out_trade_no": "ORDER000010",
        "out_refund_no": "REFUND0001",
        "amount": {"refund": 40, "total": 100, "currency": "CNY"},
    }
    r1 = v3_call(env, merchant, "POST", "/v3/refund/domestic/refunds", refund)
    r2 = v3_call(env, merchant, "POST", "/v3/refund/domestic/refunds", refund)
    assert r1.json()["refund_id"] == r2.json()["refund_id"]
    r3 = v3_call(
        env,
        merchant,
        "POST",
        "/v3/refund/domestic/refunds",
        {**refund, "amount": {"refund": 41, "total": 100, "currency": "CNY"}},
    )
    assert (r3.status_code, r3.json()["code"]) == (400, "INVALID_REQUEST")
    assert env.world.state.orders[(merchant["mchid"], "ORDER000010")].refunded_fen == 40


def test_fault_error_does_not_take_effect(shop: Any) -> None:
    env, merchant, app, openid = shop
    env.post("/faults", {"api": "v3.jsapi", "mode": "error", "code": "FREQUENCY_LIMITED"})
    resp = v3_call(env, merchant, "POST", JSAPI, _order(merchant, app, openid, "ORDER000020"))
    assert (resp.status_code, resp.json()["code"]) == (429, "FREQUENCY_LIMITED")
    assert (merchant["mchid"], "ORDER000020") not in env.world.state.orders
    resp = v3_call(env, merchant, "POST", JSAPI, _order(merchant, app, openid, "ORDER000020"))
    assert resp.status_code == 200  # count=1: the next call goes through


def test_fault_accept_then_error_takes_effect_once(shop: Any) -> None:
    env, merchant, app, openid = shop
    body = {
        "appid": app["appid"],
        "out_bill_no": "BILL0000001",
        "transfer_scene_id": "1000",
        "openid": openid,
        "transfer_amount": 500,
        "transfer_remark": "返利",
        "transfer_scene_report_infos": [{"info_type": "活动名称", "info_content": "返利"}],
    }
    env.post("/faults", {"api": "v3.transfer_bill", "mode": "accept_then_error"})
    path = "/v3/fund-app/mch-transfer/transfer-bills"
    resp = v3_call(env, merchant, "POST", path, body)
    assert (resp.status_code, resp.json()["code"]) == (500, "SYSTEM_ERROR")
    retry = v3_call(env, merchant, "POST", path, body)  # same out_bill_no, same body: the golden rule
    assert retry.status_code == 200
    assert retry.json()["state"] == "WAIT_USER_CONFIRM"
    env.post("/transfer-bills/BILL0000001/confirm")
    payouts = env.admin.get("/_sandbox/payouts").get_json()["payouts"]
    assert [(p["key"], p["paid"]) for p in payouts] == [("BILL0000001", True)]
    assert env.world.state.merchants[merchant["mchid"]].balance_fen == 100_000 - 500


@pytest.mark.parametrize("after_commit", [False, True])
def test_fault_timeout(shop: Any, after_commit: bool) -> None:
    env, merchant, app, openid = shop
    env.post("/faults", {"api": "v3.jsapi", "mode": "timeout", "after_commit": after_commit})
    with pytest.raises(requests.exceptions.ReadTimeout):
        v3_call(env, merchant, "POST", JSAPI, _order(merchant, app, openid, "ORDER000030"))
    assert ((merchant["mchid"], "ORDER000030") in env.world.state.orders) is after_commit


def test_fault_malformed_body_is_signed_but_unparseable(shop: Any) -> None:
    env, merchant, _app, _openid = shop
    env.post("/faults", {"api": "v3.query", "mode": "malformed", "count": 2})
    path = f"/v3/pay/transactions/out-trade-no/ORDER000040?mchid={merchant['mchid']}"
    for _ in range(2):
        resp = v3_call(env, merchant, "GET", path)
        assert resp.status_code == 200
        assert verify_v3_response(merchant, resp)
        with pytest.raises(ValueError):
            resp.json()
    assert v3_call(env, merchant, "GET", path).status_code == 404


def test_fault_validation(env: Env) -> None:
    resp = env.admin.post("/_sandbox/faults", json={"api": "v3.nope", "mode": "error", "code": "X"})
    assert resp.status_code == 422
    assert resp.get_json()["error"]["details"]["field"] == "api"


def test_not_enough_then_topup(shop: Any) -> None:
    env, merchant, app, openid = shop
    body = {
        "appid": app["appid"],
        "out_bill_no": "BILL0000002",
        "transfer_scene_id": "1000",
        "openid": openid,
        "transfer_amount": 200_000 - 1,
        "transfer_remark": "返利",
        "transfer_scene_report_infos": [{"info_type": "活动名称", "info_content": "返利"}],
    }
    path = "/v3/fund-app/mch-transfer/transfer-bills"
    resp = v3_call(env, merchant, "POST", path, body)
    assert (resp.status_code, resp.json()["code"]) == (403, "NOT_ENOUGH")
    env.post(f"/merchants/{merchant['mchid']}/topup", {"amount_fen": 100_000})
    assert v3_call(env, merchant, "POST", path, body).status_code == 200


def _cumulative(schedule: tuple[int, ...], scale: float) -> list[float]:
    out, t = [0.0], 0.0
    for delay in schedule:
        t += delay / scale
        out.append(t)
    return out


@pytest.mark.parametrize("scale", [1.0, 60.0])
def test_notification_retry_schedule_and_time_scale(key_pool: Any, scale: float) -> None:
    for env in make_env(key_pool, time_scale=scale):
        merchant = env.merchant(balance_fen=0)
        app = env.mini_program(merchant["mchid"])
        openid = env.user()["openids"][app["appid"]]
        env.inbox.status = 500
        assert (
            v3_call(env, merchant, "POST", JSAPI, _order(merchant, app, openid, "ORDER000050")).status_code
            == 200
        )
        start = env.world.clock.now()
        env.post("/transactions/ORDER000050/pay")
        assert len(env.inbox.received) == 1
        env.advance(15 / scale - 0.001)
        assert len(env.inbox.received) == 1  # not yet
        env.advance(25 * 3600 / scale)
        assert len(env.inbox.received) == 1 + len(V3_RETRY_S)  # 16 attempts, then WeChat gives up
        note = env.notifications(event_type="TRANSACTION.SUCCESS")[0]
        assert note["state"] == "failed"
        from wechat.sandbox.clock import parse_rfc3339

        offsets = [parse_rfc3339(a["at"]) - start for a in note["attempts"]]
        assert offsets == pytest.approx([int(x) for x in _cumulative(V3_RETRY_S, scale)], abs=1.0)


def test_notification_success_only_on_200_or_204_and_stops(shop: Any) -> None:
    env, merchant, app, openid = shop
    env.inbox.answers = [503, 302, 204]
    v3_call(env, merchant, "POST", JSAPI, _order(merchant, app, openid, "ORDER000060"))
    env.post("/transactions/ORDER000060/pay")
    env.advance(60)
    note = env.notifications()[0]
    assert [a["status"] for a in note["attempts"]] == [503, 302, 204]
    assert note["state"] == "delivered"
    env.advance(86400)
    assert len(env.inbox.received) == 3


def test_duplicate_and_probe_deliveries(shop: Any) -> None:
    env, merchant, app, openid = shop
    env.post(
        f"/merchants/{merchant['mchid']}/settings",
        {"duplicate_notifications": True, "probe_notifications": True},
    )
    env.inbox.answers = [401]  # a careful merchant rejects the probe
    v3_call(env, merchant, "POST", JSAPI, _order(merchant, app, openid, "ORDER000070"))
    env.post("/transactions/ORDER000070/pay")
    env.advance(2)
    kinds = [a["kind"] for a in env.notifications()[0]["attempts"]]
    assert kinds == ["probe", "delivery", "duplicate"]
    probe = env.inbox.received[0]["headers"]["Wechatpay-Signature"]
    assert probe.startswith("WECHATPAY/SIGNTEST/")
    assert env.inbox.received[1]["body"] == env.inbox.received[2]["body"]


def test_refund_abnormal_then_closed_returns_money(shop: Any) -> None:
    env, merchant, app, openid = shop
    v3_call(env, merchant, "POST", JSAPI, _order(merchant, app, openid, "ORDER000080", 300))
    env.post("/transactions/ORDER000080/pay")
    balance = env.world.state.merchants[merchant["mchid"]].balance_fen
    v3_call(
        env,
        merchant,
        "POST",
        "/v3/refund/domestic/refunds",
        {
            "out_trade_no": "ORDER000080",
            "out_refund_no": "REFUND0080",
            "amount": {"refund": 300, "total": 300, "currency": "CNY"},
        },
    )
    env.post("/refunds/REFUND0080/resolve", {"status": "ABNORMAL"})
    env.post("/refunds/REFUND0080/resolve", {"status": "CLOSED"})
    env.advance(60)
    assert [n["event_type"] for n in env.notifications()][-2:] == ["REFUND.ABNORMAL", "REFUND.CLOSED"]
    assert env.world.state.merchants[merchant["mchid"]].balance_fen == balance
    query = v3_call(env, merchant, "GET", "/v3/refund/domestic/refunds/REFUND0080")
    assert query.json()["status"] == "CLOSED"


def test_trade_bill_mismatch_injection(shop: Any) -> None:
    env, merchant, app, openid = shop
    for no, total in (("ORDER000091", 1234), ("ORDER000092", 500)):
        v3_call(env, merchant, "POST", JSAPI, _order(merchant, app, openid, no, total))
        env.post(f"/transactions/{no}/pay")
    from wechat.sandbox.clock import cst_format

    day = cst_format(env.world.clock.now(), "%Y-%m-%d")
    not_yet = v3_call(env, merchant, "GET", f"/v3/bill/tradebill?bill_date={day}&bill_type=ALL")
    assert (not_yet.status_code, not_yet.json()["code"]) == (400, "NO_STATEMENT_EXIST")
    env.advance(86400)
    env.post(
        "/bills/mismatch",
        {
            "mchid": merchant["mchid"],
            "bill_date": day,
            "kind": "amount",
            "out_trade_no": "ORDER000091",
            "amount_fen": 1200,
        },
    )
    env.post(
        "/bills/mismatch",
        {"mchid": merchant["mchid"], "bill_date": day, "kind": "missing", "out_trade_no": "ORDER000092"},
    )
    env.post(
        "/bills/mismatch",
        {
            "mchid": merchant["mchid"],
            "bill_date": day,
            "kind": "extra",
            "out_trade_no": "PHANTOM0001",
            "amount_fen": 999,
        },
    )
    bill = v3_call(env, merchant, "GET", f"/v3/bill/tradebill?bill_date={day}&bill_type=ALL").json()
    path = bill["download_url"].removeprefix("https://api.mch.weixin.qq.com")
    file = v3_call(env, merchant, "GET", path)
    assert file.status_code == 200
    assert "Wechatpay-Signature" not in file.headers  # bill files are not signed (§3.3 rule 4)
    text = file.content.decode()
    rows = [line.split(",") for line in text.strip().split("\r\n")]
    detail = {r[6]: r for r in rows[1:-2]}
    assert detail["`ORDER000091"][12] == "`12.00"
    assert "`ORDER000092" not in detail
    assert detail["`PHANTOM0001"][12] == "`9.99"
    assert rows[-1][0] == "`2"
