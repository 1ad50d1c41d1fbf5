"""Pay v2 behaviour through wechatpy's v2 client (an independent v2 signer): red packets, transfers."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from wechatpy.exceptions import WeChatPayException
from wechatpy.pay import WeChatPay as WeChatPayV2

from tests.wechat.sandbox.conftest import Env
from wechat.sandbox import crypto
from wechat.sandbox.v2 import parse_xml, to_xml

MCH = "https://api.mch.weixin.qq.com"


@pytest.fixture
def v2(env: Env) -> tuple[Env, dict[str, Any], WeChatPayV2, str]:
    merchant = env.merchant(balance_fen=10_000)
    oa = env.official(merchant["mchid"])
    openid = env.user(nickname="红包用户")["openids"][oa["appid"]]
    client = WeChatPayV2(appid=oa["appid"], api_key=merchant["v2_key"], mch_id=merchant["mchid"])
    return env, merchant, client, openid


def _send(client: WeChatPayV2, openid: str, billno: str, amount: int = 888) -> dict[str, Any]:
    return dict(
        client.redpack.send(
            openid,
            amount,
            "洪利",
            "双向返利",
            "恭喜发财",
            "返利红包",
            client_ip="127.0.0.1",
            out_trade_no=billno,
        )
    )


def test_redpack_sent_opened(v2: Any) -> None:
    env, _merchant, client, openid = v2
    sent = _send(client, openid, "1900000001202611240000000001")
    assert sent["result_code"] == "SUCCESS"
    info = client.redpack.query("1900000001202611240000000001")
    assert info["status"] == "SENT"
    env.post("/redpacks/1900000001202611240000000001/open")
    info = client.redpack.query("1900000001202611240000000001")
    assert info["status"] == "RECEIVED"
    assert info["hblist"]["hbinfo"]["openid"] == openid
    assert env.admin.get("/_sandbox/payouts").get_json()["received_fen_by_openid"] == {openid: 888}


def test_redpack_refunded_after_24h_unopened(v2: Any) -> None:
    env, merchant, client, openid = v2
    _send(client, openid, "RP0000000000000000000000002")
    balance = lambda: env.world.state.merchants[merchant["mchid"]].balance_fen  # noqa: E731
    assert balance() == 10_000 - 888
    env.advance(24 * 3600 - 1)
    assert client.redpack.query("RP0000000000000000000000002")["status"] == "SENT"
    env.advance(1)
    assert client.redpack.query("RP0000000000000000000000002")["status"] == "RFUND_ING"
    env.advance(60)
    info = client.redpack.query("RP0000000000000000000000002")
    assert (info["status"], info["refund_amount"]) == ("REFUND", "888")
    assert balance() == 10_000


def test_redpack_idempotency_fatal_error_and_notenough(v2: Any) -> None:
    env, merchant, client, openid = v2
    first = _send(client, openid, "RP0000000000000000000000003")
    again = _send(client, openid, "RP0000000000000000000000003")  # wechatpy uses a new nonce_str each call
    assert first["send_listid"] == again["send_listid"]
    with pytest.raises(WeChatPayException) as exc:
        _send(client, openid, "RP0000000000000000000000003", amount=999)
    assert exc.value.errcode == "FATAL_ERROR"
    with pytest.raises(WeChatPayException) as exc:
        _send(client, openid, "RP0000000000000000000000004", amount=20_000)
    assert exc.value.errcode == "NOTENOUGH"
    env.post(f"/merchants/{merchant['mchid']}/topup", {"amount_fen": 20_000})
    assert _send(client, openid, "RP0000000000000000000000004", amount=20_000)["result_code"] == "SUCCESS"
    payouts = env.admin.get("/_sandbox/payouts").get_json()["payouts"]
    assert sorted(p["key"] for p in payouts) == ["RP0000000000000000000000003", "RP0000000000000000000000004"]


def test_redpack_accept_then_systemerror_retry_pays_once(v2: Any) -> None:
    env, merchant, client, openid = v2
    env.post("/faults", {"api": "v2.sendredpack", "mode": "accept_then_error", "code": "SYSTEMERROR"})
    with pytest.raises(WeChatPayException) as exc:
        _send(client, openid, "RP0000000000000000000000005")
    assert exc.value.errcode == "SYSTEMERROR"
    assert _send(client, openid, "RP0000000000000000000000005")["result_code"] == "SUCCESS"
    assert env.world.state.merchants[merchant["mchid"]].balance_fen == 10_000 - 888


def test_v2_faults_timeout_and_malformed(v2: Any) -> None:
    env, _merchant, client, openid = v2
    env.post("/faults", {"api": "v2.sendredpack", "mode": "timeout"})
    with pytest.raises(requests.exceptions.ReadTimeout):
        _send(client, openid, "RP0000000000000000000000006")
    env.post("/faults", {"api": "v2.gethbinfo", "mode": "malformed"})
    assert isinstance(client.redpack.query("RP0000000000000000000000006"), str)  # wechatpy returns raw text


def test_v2_sign_refusal_and_hmac(v2: Any) -> None:
    _env, merchant, client, _openid = v2
    params = {
        "mch_id": merchant["mchid"],
        "appid": client.appid,
        "mch_billno": "NOPE",
        "bill_type": "MCHT",
        "nonce_str": "abc123",
    }
    bad = {**params, "sign": "0" * 32}
    reply = parse_xml(
        requests.post(f"{MCH}/mmpaymkttransfers/gethbinfo", data=to_xml(bad), timeout=5).content
    )
    assert (reply["return_code"], reply["err_code"]) == ("FAIL", "SIGN_ERROR")
    hmac_params = {**params, "sign_type": "HMAC-SHA256"}
    hmac_params["sign"] = crypto.v2_sign(hmac_params, merchant["v2_key"], "HMAC-SHA256")
    reply = parse_xml(
        requests.post(f"{MCH}/mmpaymkttransfers/gethbinfo", data=to_xml(hmac_params), timeout=5).content
    )
    assert (reply["return_code"], reply["err_code"]) == ("SUCCESS", "NOT_FOUND")
    # The reply is signed with the v2 key.
    assert crypto.v2_sign(reply, merchant["v2_key"]) == reply["sign"]


def test_v2_redpack_openid_and_appid_checks(v2: Any, env: Env) -> None:
    _, merchant, client, openid = v2
    mp = env.mini_program(merchant["mchid"])
    mp_client = WeChatPayV2(appid=mp["appid"], api_key=merchant["v2_key"], mch_id=merchant["mchid"])
    with pytest.raises(WeChatPayException) as exc:
        _send(mp_client, openid, "RP0000000000000000000000007")
    assert exc.value.errcode == "ILLEGAL_APPID"
    with pytest.raises(WeChatPayException) as exc:
        _send(client, "o-not-a-user", "RP0000000000000000000000008")
    assert exc.value.errcode == "OPENID_ERROR"


def test_group_redpack_split(v2: Any) -> None:
    env, merchant, client, openid = v2
    sent = client.redpack.send_group(
        openid,
        900,
        "洪利",
        "裂变",
        "恭喜",
        "备注",
        3,
        client_ip="127.0.0.1",
        out_trade_no="GRP000000000000000000000001",
    )
    assert sent["result_code"] == "SUCCESS"
    packet = env.world.state.redpacks[(merchant["mchid"], "GRP000000000000000000000001")]
    assert sum(packet.shares) == 900
    assert len(packet.shares) == 3
    assert min(packet.shares) >= 1


def test_v2_transfer_and_query(v2: Any) -> None:
    env, merchant, client, openid = v2
    result = client.transfer.transfer(
        openid,
        300,
        "返利提现",
        client_ip="127.0.0.1",
        check_name="NO_CHECK",
        out_trade_no="TR000000000000000001",
    )
    assert result["payment_no"]
    again = client.transfer.transfer(
        openid,
        300,
        "返利提现",
        client_ip="127.0.0.1",
        check_name="NO_CHECK",
        out_trade_no="TR000000000000000001",
    )
    assert again["payment_no"] == result["payment_no"]
    info = client.transfer.query("TR000000000000000001")
    assert (info["status"], info["payment_amount"]) == ("SUCCESS", "300")
    assert env.world.state.merchants[merchant["mchid"]].balance_fen == 10_000 - 300


def test_redpack_daily_count_limit_per_user(v2: Any) -> None:
    env, merchant, client, openid = v2
    env.post(f"/merchants/{merchant['mchid']}/topup", {"amount_fen": 100_000})
    for i in range(10):
        _send(client, openid, f"DAY0000000000000000000000{i:02d}", amount=100)
    with pytest.raises(WeChatPayException) as exc:
        _send(client, openid, "DAY000000000000000000000010", amount=100)
    assert exc.value.errcode == "SENDNUM_LIMIT"
    env.advance(86400)
    assert _send(client, openid, "DAY000000000000000000000010", amount=100)["result_code"] == "SUCCESS"
