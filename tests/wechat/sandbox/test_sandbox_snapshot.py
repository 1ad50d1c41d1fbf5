"""``--state-file``: a dumped world restores with keys, balances, idempotency and timers intact."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from wechatpy.pay import WeChatPay as WeChatPayV2

from tests.wechat.sandbox.conftest import NOTIFY_URL, make_env, v3_call, verify_v3_response
from tests.wechat.sandbox.test_sandbox_runtime import ROOT, _free_port
from wechat.sandbox import snapshot


def test_dump_and_load_round_trip(key_pool: Any) -> None:
    saved: dict[str, Any] = {}
    for env in make_env(key_pool, seed=11):
        merchant = env.merchant(balance_fen=5_000)
        oa = env.official(merchant["mchid"])
        openid = env.user()["openids"][oa["appid"]]
        order = {
            "appid": oa["appid"],
            "mchid": merchant["mchid"],
            "description": "d",
            "out_trade_no": "SNAP000001",
            "notify_url": NOTIFY_URL,
            "amount": {"total": 300},
            "payer": {"openid": openid},
        }
        prepay = v3_call(env, merchant, "POST", "/v3/pay/transactions/jsapi", order).json()["prepay_id"]
        client = WeChatPayV2(appid=oa["appid"], api_key=merchant["v2_key"], mch_id=merchant["mchid"])
        client.redpack.send(
            openid,
            1000,
            "洪利",
            "返利",
            "恭喜",
            "备注",
            client_ip="127.0.0.1",
            out_trade_no="SNAPRP00000000000000000001",
        )
        saved = json.loads(json.dumps(snapshot.dump(env.world)))  # must be plain JSON
        saved["_merchant"], saved["_order"], saved["_prepay"] = merchant, order, prepay

    for env in make_env(key_pool, seed=99):
        snapshot.load(env.world, saved)
        merchant, order = saved["_merchant"], saved["_order"]
        again = v3_call(env, merchant, "POST", "/v3/pay/transactions/jsapi", order)
        assert again.json()["prepay_id"] == saved["_prepay"]  # idempotency survived
        assert verify_v3_response(merchant, again)  # same platform key
        assert env.world.state.merchants[merchant["mchid"]].balance_fen == 4_000
        env.advance(24 * 3600 + 60)  # the red packet timer was re-armed
        packet = env.world.state.redpacks[(merchant["mchid"], "SNAPRP00000000000000000001")]
        assert packet.status == "REFUND"
        assert env.world.state.merchants[merchant["mchid"]].balance_fen == 5_000


@pytest.mark.slow
def test_server_state_file_survives_restart(tmp_path: Path) -> None:
    state = tmp_path / "sandbox.json"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            [sys.executable, "-m", "wechat.sandbox", "--port", str(port), "--state-file", str(state)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                requests.get(f"{base}/_sandbox/clock", timeout=1)
                return proc
            except requests.ConnectionError:
                time.sleep(0.05)
        proc.kill()
        pytest.fail("sandbox server did not start")

    proc = start()
    try:
        app = requests.post(f"{base}/_sandbox/apps", json={"kind": "miniprogram"}, timeout=5).json()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert state.exists()
    proc = start()
    try:
        token = requests.get(
            f"{base}/cgi-bin/token",
            timeout=5,
            params={"grant_type": "client_credential", "appid": app["appid"], "secret": app["secret"]},
        ).json()
        assert "access_token" in token
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_merchant_coupons_follows_and_messages_survive_a_restart(key_pool: Any) -> None:
    from wechat.sandbox.state import BusifavorCoupon, BusifavorStock, PhoneCode, QrTicket, SentMessage

    saved: dict[str, Any] = {}
    for env in make_env(key_pool, seed=12):
        st = env.world.state
        st.busifavor_stocks["1212"] = BusifavorStock(
            "1212", "1900000001", "茶", 300, 3000, 10, 1, 1.0, 2.0, "MERCHANT_API", 1.0, sent=1
        )
        st.busifavor_coupons[("1212", "HL0000000001")] = BusifavorCoupon(
            "HL0000000001",
            "1212",
            "o-user",
            "wx-app",
            "req-1",
            1.5,
            status="USED",
            used_at=1.7,
            use_request_no="u-1",
        )
        st.qr_tickets["T1"] = QrTicket("T1", "wx-app", "inviter:7", permanent=False, expires_at=99.0)
        st.phone_codes["C1"] = PhoneCode("C1", "wx-app", "u1", "13800000000", 50.0)
        st.sent_messages.append(
            SentMessage("m1", "template", "wx-app", "u1", "tpl", {"a": {"value": "1"}}, "", 3.0)
        )
        st.follows[("wx-app", "u1")] = 2.5
        st.subscribe_consents[("wx-app", "u1", "tpl")] = 2
        saved = json.loads(json.dumps(snapshot.dump(env.world)))
        before = {
            name: dict(getattr(st, name))
            for name in ("busifavor_stocks", "busifavor_coupons", "qr_tickets", "phone_codes", "follows")
        } | {"consents": dict(st.subscribe_consents), "messages": list(st.sent_messages)}

    for env in make_env(key_pool, seed=98):
        snapshot.load(env.world, saved)
        st = env.world.state
        after = {
            name: dict(getattr(st, name))
            for name in ("busifavor_stocks", "busifavor_coupons", "qr_tickets", "phone_codes", "follows")
        } | {"consents": dict(st.subscribe_consents), "messages": list(st.sent_messages)}
        assert after == before
