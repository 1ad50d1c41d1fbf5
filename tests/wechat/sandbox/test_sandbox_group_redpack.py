"""Fission red packets (sendgroupredpack, protocol doc §5.3, §5.5) through wechatpy's v2 client: the
ALL_RAND split with every packet at least 1 yuan, the seed's then the friends' opens in gethbinfo, the
friends' unopened shares refunded at expiry, and a merchant whose account lacks cash red packets."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from wechatpy.exceptions import WeChatPayException
from wechatpy.pay import WeChatPay as WeChatPayV2

from tests.wechat.sandbox.conftest import Env
from wechat.sandbox.payouts import split_group


@pytest.fixture
def group(env: Env) -> tuple[Env, dict[str, Any], WeChatPayV2, str]:
    merchant = env.merchant(balance_fen=1_000_000)
    oa = env.official(merchant["mchid"])
    openid = env.user(nickname="裂变种子")["openids"][oa["appid"]]
    client = WeChatPayV2(appid=oa["appid"], api_key=merchant["v2_key"], mch_id=merchant["mchid"])
    return env, merchant, client, openid


def _send(client: WeChatPayV2, openid: str, billno: str, amount: int, num: int) -> dict[str, Any]:
    return dict(
        client.redpack.send_group(
            openid, amount, "洪利", "裂变", "恭喜", "备注", num, client_ip="127.0.0.1", out_trade_no=billno
        )
    )


def _hblist(info: dict[str, Any]) -> list[dict[str, Any]]:
    items = info.get("hblist", {}).get("hbinfo", [])
    return items if isinstance(items, list) else [items]


@pytest.mark.parametrize(("amount", "num"), [(300, 3), (1000, 5), (400_000, 20)])
def test_every_packet_of_a_group_is_at_least_one_yuan(group: Any, amount: int, num: int) -> None:
    env, merchant, client, openid = group
    billno = f"GRP{amount:010d}{num:02d}"
    assert _send(client, openid, billno, amount, num)["result_code"] == "SUCCESS"
    packet = env.world.state.redpacks[(merchant["mchid"], billno)]
    assert (packet.hb_type, packet.total_num, len(packet.shares)) == ("GROUP", num, num)
    assert sum(packet.shares) == amount and min(packet.shares) >= 100


@pytest.mark.parametrize("cut", ["low", "high"])
def test_no_packet_of_a_group_exceeds_one_thousand_yuan_however_the_cuts_fall(cut: str) -> None:
    # The most lopsided cuts possible: every cut at one end, so one share would take all the spare.
    pick = (lambda low, high: low) if cut == "low" else (lambda low, high: high)
    world: Any = SimpleNamespace(rng=SimpleNamespace(randint=pick))
    shares = split_group(world, 400_000, 20)
    assert sum(shares) == 400_000 and len(shares) == 20
    assert min(shares) >= 100 and max(shares) <= 100_000


def test_an_average_under_one_yuan_is_refused(group: Any) -> None:
    env, _merchant, client, openid = group
    with pytest.raises(WeChatPayException) as exc:
        _send(client, openid, "GRP0000000000000001", 299, 3)
    assert exc.value.errcode == "MONEY_LIMIT"
    assert env.world.state.redpacks == {}


def test_the_seed_then_the_friends_open_and_the_rest_is_refunded_at_expiry(group: Any) -> None:
    env, merchant, client, openid = group
    _send(client, openid, "GRP0000000000000002", 1000, 4)
    shares = env.world.state.redpacks[(merchant["mchid"], "GRP0000000000000002")].shares
    assert client.redpack.query("GRP0000000000000002")["status"] == "SENT"
    refused = env.admin.post("/_sandbox/redpacks/GRP0000000000000002/friends-open", json={"count": 1})
    assert refused.status_code == 409  # the seed opens first
    env.post("/redpacks/GRP0000000000000002/open")
    info = client.redpack.query("GRP0000000000000002")
    assert (info["status"], info["hb_type"], info["total_num"]) == ("RECEIVED", "GROUP", "4")
    assert [(i["openid"], int(i["amount"])) for i in _hblist(info)] == [(openid, shares[0])]
    env.post("/redpacks/GRP0000000000000002/friends-open", {"count": 2})
    info = client.redpack.query("GRP0000000000000002")
    assert [int(i["amount"]) for i in _hblist(info)] == shares[:3]
    too_many = env.admin.post("/_sandbox/redpacks/GRP0000000000000002/friends-open", json={"count": 2})
    assert too_many.status_code == 422
    balance = env.world.state.merchants[merchant["mchid"]].balance_fen
    env.advance(24 * 3600)
    info = client.redpack.query("GRP0000000000000002")
    assert info["status"] == "RECEIVED" and int(info["refund_amount"]) == shares[3]
    assert env.world.state.merchants[merchant["mchid"]].balance_fen == balance + shares[3]


@pytest.mark.parametrize("code", ["NO_AUTH", "PRODUCT_AUTHORITY_UNOPEN"])
def test_a_merchant_without_cash_red_packets_is_refused_and_nothing_is_sent(group: Any, code: str) -> None:
    env, merchant, client, openid = group
    env.post(f"/merchants/{merchant['mchid']}/cash-red-packets", {"enabled": False, "code": code})
    with pytest.raises(WeChatPayException) as exc:
        _send(client, openid, "GRP0000000000000003", 1000, 4)
    assert exc.value.errcode == code
    assert env.world.state.redpacks == {}
    assert env.world.state.merchants[merchant["mchid"]].balance_fen == 1_000_000
    env.post(f"/merchants/{merchant['mchid']}/cash-red-packets", {"enabled": True})
    assert _send(client, openid, "GRP0000000000000003", 1000, 4)["result_code"] == "SUCCESS"
