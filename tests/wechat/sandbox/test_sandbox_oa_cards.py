"""Card-pack APIs via wechatpy and official-account event pushes (plain and safe mode)."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from wechatpy import WeChatClient, parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import WeChatClientException
from wechatpy.utils import check_signature

from tests.wechat.sandbox.conftest import Env

CARD: dict[str, Any] = {
    "card": {
        "card_type": "CASH",
        "cash": {
            "base_info": {
                "title": "满50减10",
                "brand_name": "洪利小店",
                "code_type": "CODE_TYPE_QRCODE",
                "sku": {"quantity": 5},
                "use_custom_code": True,
                "date_info": {"type": "DATE_TYPE_FIX_TERM", "fixed_term": 30},
            },
            "least_cost": 5000,
            "reduce_cost": 1000,
        },
    }
}


def _decode(env: Env, app: dict[str, Any], got: dict[str, Any]) -> Any:
    query = {k: v[0] for k, v in parse_qs(urlsplit(got["url"]).query).items()}
    check_signature(app["token"], query["signature"], query["timestamp"], query["nonce"])
    body = got["body"]
    if query.get("encrypt_type") == "aes":
        body = WeChatCrypto(app["token"], app["encoding_aes_key"], app["appid"]).decrypt_message(
            body, query["msg_signature"], query["timestamp"], query["nonce"]
        )
    return parse_message(body)


@pytest.mark.parametrize("safe_mode", [False, True], ids=["plain", "safe"])
def test_card_lifecycle_and_events(env: Env, safe_mode: bool) -> None:
    oa = env.official(safe_mode=safe_mode)
    user = env.user()
    client = WeChatClient(oa["appid"], oa["secret"])
    card_id = client.card.create(CARD)
    client.card.deposit_code(card_id, ["HL0001", "HL0002"])
    assert client.card.get_deposit_count(card_id)["count"] == 2

    env.post(f"/users/{user['id']}/follow", {"appid": oa["appid"]})
    issued = env.post("/cards/receive", {"user_id": user["id"], "card_id": card_id, "outer_str": "campaign7"})
    assert issued["code"] == "HL0001"
    assert client.card.decrypt_code(issued["encrypt_code"]) == "HL0001"
    got = client.card.get_code("HL0001", card_id)
    assert got["user_card_status"] == "NORMAL"
    client.card.consume_code("HL0001", card_id)
    with pytest.raises(WeChatClientException) as exc:
        client.card.get_code("HL0001", card_id)
    assert exc.value.errcode == 40099

    second = env.post("/cards/receive", {"user_id": user["id"], "card_id": card_id})
    env.post(f"/cards/{second['code']}/delete")

    events = [_decode(env, oa, got) for got in env.oa_inbox.received]
    assert [e.event for e in events] == [
        "subscribe",
        "user_get_card",
        "user_consume_card",
        "user_get_card",
        "user_del_card",
    ]
    assert all(e.source == user["openids"][oa["appid"]] for e in events)
    assert events[1].card_id == card_id
    assert events[1].outer_str == "campaign7"
    assert events[2].consume_source == "FROM_API"


def test_oa_event_retried_three_times_then_dropped(env: Env) -> None:
    oa = env.official()
    user = env.user()
    env.oa_inbox.status = 500
    env.post(f"/users/{user['id']}/follow", {"appid": oa["appid"]})
    env.advance(60)
    assert len(env.oa_inbox.received) == 4
    note = env.notifications(owner=oa["appid"])[0]
    assert note["state"] == "failed"


def test_card_stock_runs_out(env: Env) -> None:
    oa = env.official()
    user = env.user()
    client = WeChatClient(oa["appid"], oa["secret"])
    card = copy.deepcopy(CARD)
    card["card"]["cash"]["base_info"].update({"sku": {"quantity": 1}, "use_custom_code": False})
    card_id = client.card.create(card)
    env.post("/cards/receive", {"user_id": user["id"], "card_id": card_id})
    resp = env.admin.post("/_sandbox/cards/receive", json={"user_id": user["id"], "card_id": card_id})
    assert resp.status_code == 409
    assert resp.get_json()["error"]["code"] == "45031"


def test_card_qrcode_and_state_view(env: Env) -> None:
    oa = env.official()
    client = WeChatClient(oa["appid"], oa["secret"])
    card_id = client.card.create(CARD)
    ticket = client.card.create_qrcode(  # wechatpy returns only the ticket
        {
            "action_name": "QR_CARD",
            "expire_seconds": 1800,
            "action_info": {"card": {"card_id": card_id, "outer_str": "poster"}},
        }
    )
    assert isinstance(ticket, str)
    assert len(ticket) == 64
    cards = env.admin.get("/_sandbox/state/cards").get_json()["cards"]
    assert [c["card_id"] for c in cards] == [card_id]
    assert env.admin.get("/_sandbox/state/secrets").status_code == 404
