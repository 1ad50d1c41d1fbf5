"""OfficialAccountClient, MessageCrypto and CardClient against the sandbox (protocol doc §2, §7b)."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.wechat.contract.conftest import ENDPOINTS, Sandbox
from wechat.cards import CardClient, card_ext
from wechat.errors import WeChatError
from wechat.official import OfficialAccountClient
from wechat.sandbox import crypto as sb_crypto

REDIRECT = "https://hongli.example.test/oauth/back"

CARD: dict[str, Any] = {
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


def _oa(sandbox: Sandbox, **kw: Any) -> tuple[OfficialAccountClient, dict[str, Any]]:
    app = sandbox.official(**kw)
    return OfficialAccountClient(app["appid"], app["secret"], ENDPOINTS), app


def _authorize(url: str, user_id: str) -> dict[str, str]:
    """The browser step: follow our authorize URL to the sandbox and read the redirect it answers."""
    base, _, fragment = url.partition("#")
    assert fragment == "wechat_redirect"
    resp = requests.get(f"{base}&sandbox_user={user_id}", allow_redirects=False, timeout=5)
    assert resp.status_code == 302
    location = urlsplit(resp.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def test_web_oauth_authorize_exchange_refresh_userinfo(sandbox: Sandbox) -> None:
    client, app = _oa(sandbox)
    user = sandbox.user(nickname="张小红")
    openid = user["openids"][app["appid"]]

    back = _authorize(client.authorize_url(REDIRECT, scope="snsapi_userinfo", state="s7Xk2"), user["id"])
    assert back["state"] == "s7Xk2"
    token = client.exchange_code(back["code"])
    assert (token.openid, token.scope, token.unionid) == (openid, "snsapi_userinfo", user["unionid"])
    assert token.expires_in == 7200

    with pytest.raises(WeChatError) as exc:
        client.exchange_code(back["code"])
    assert (exc.value.code, exc.value.final) == ("40163", True)

    info = client.userinfo(token.access_token, token.openid)
    assert (info["openid"], info["nickname"], info["unionid"]) == (openid, "张小红", user["unionid"])

    # Refresh before expiry keeps the token; after expiry a new one is issued and the old one is dead.
    sandbox.advance(600)
    same = client.refresh_oauth_token(token.refresh_token)
    assert (same.access_token, same.expires_in) == (token.access_token, 7200)
    sandbox.advance(7201)
    fresh = client.refresh_oauth_token(token.refresh_token)
    assert fresh.access_token != token.access_token
    assert fresh.openid == openid
    with pytest.raises(WeChatError) as exc:
        client.userinfo(token.access_token, openid)
    assert (exc.value.code, exc.value.final) == ("40001", True)
    assert client.userinfo(fresh.access_token, openid)["nickname"] == "张小红"


def test_snsapi_base_has_no_userinfo_and_deny_has_no_code(sandbox: Sandbox) -> None:
    client, _app = _oa(sandbox)
    user = sandbox.user()
    back = _authorize(client.authorize_url(REDIRECT, state="b1"), user["id"])
    token = client.exchange_code(back["code"])
    assert (token.scope, token.unionid) == ("snsapi_base", None)
    with pytest.raises(WeChatError) as exc:
        client.userinfo(token.access_token, token.openid)
    assert (exc.value.code, exc.value.final) == ("48001", True)

    url = client.authorize_url(REDIRECT, scope="snsapi_userinfo", state="d1").partition("#")[0]
    resp = requests.get(f"{url}&action=deny", allow_redirects=False, timeout=5)
    assert parse_qs(urlsplit(resp.headers["Location"]).query) == {"state": ["d1"]}


def test_bad_refresh_token_is_an_error(sandbox: Sandbox) -> None:
    client, _app = _oa(sandbox)
    with pytest.raises(WeChatError) as exc:
        client.refresh_oauth_token("nope")
    assert exc.value.code == "40030"


def test_tickets_jsapi_and_wx_card(sandbox: Sandbox) -> None:
    client, app = _oa(sandbox)
    token = client.fetch_access_token().token
    jsapi = client.get_ticket(token, "jsapi")
    card = client.get_ticket(token, "wx_card")
    assert jsapi.ticket != card.ticket
    assert (jsapi.expires_in, card.expires_in) == (7200, 7200)
    sandbox.advance(60)
    again = client.get_ticket(token, "jsapi")
    assert (again.ticket, again.expires_in) == (jsapi.ticket, 7140)
    assert sandbox.world.state.tickets[(app["appid"], "wx_card")][0] == card.ticket
    with pytest.raises(WeChatError) as exc:
        client.get_ticket("not-a-token", "jsapi")
    assert (exc.value.code, exc.value.final) == ("40001", True)
    sandbox.fault("mp.getticket", "error", code="45011")
    with pytest.raises(WeChatError) as exc:
        client.get_ticket(token, "jsapi")
    assert (exc.value.code, exc.value.retryable) == ("45011", True)


def test_safe_mode_follow_event_is_decrypted_by_message_crypto(sandbox: Sandbox) -> None:
    _client, app = _oa(sandbox, safe_mode=True)
    user = sandbox.user()
    sandbox.post(f"/users/{user['id']}/follow", {"appid": app["appid"], "event_key": "qrscene_42"})

    [event] = sandbox.oa.events
    assert (event.msg_type, event.event) == ("event", "subscribe")
    assert (event.from_user, event.to_user) == (user["openids"][app["appid"]], app["original_id"])
    assert event.fields["EventKey"] == "qrscene_42"
    assert event.create_time == int(sandbox.world.clock.now())
    [note] = sandbox.notifications(owner=app["appid"])
    assert (note["state"], [a["status"] for a in note["attempts"]]) == ("delivered", [200])
    query = parse_qs(urlsplit(note["last_url"]).query)
    assert query["encrypt_type"] == ["aes"]
    assert "<Encrypt>" in note["body"] and "subscribe" not in note["body"]


def test_plain_mode_follow_event(sandbox: Sandbox) -> None:
    _client, app = _oa(sandbox, safe_mode=False)
    user = sandbox.user()
    sandbox.post(f"/users/{user['id']}/follow", {"appid": app["appid"]})
    [event] = sandbox.oa.events
    assert event.event == "subscribe"
    assert event.from_user == user["openids"][app["appid"]]


def test_event_with_wrong_token_is_refused_and_retried(sandbox: Sandbox) -> None:
    _client, app = _oa(sandbox, safe_mode=True)
    sandbox.oa.register(app, token="not-the-token")
    user = sandbox.user()
    sandbox.post(f"/users/{user['id']}/follow", {"appid": app["appid"]})
    sandbox.advance(60)
    assert sandbox.oa.events == []
    assert sandbox.oa.rejected == ["SIGNATURE_INVALID"] * 4
    [note] = sandbox.notifications(owner=app["appid"])
    assert note["state"] == "failed"
    assert [a["status"] for a in note["attempts"]] == [403] * 4


def test_card_create_deposit_get_consume_and_events(sandbox: Sandbox) -> None:
    oa_client, app = _oa(sandbox, safe_mode=True)
    cards = CardClient(ENDPOINTS)
    user = sandbox.user()
    openid = user["openids"][app["appid"]]
    token = oa_client.fetch_access_token(stable=True).token

    card_id = cards.create_card(token, CARD)
    deposit = cards.deposit_codes(token, card_id, ["HL0001", "HL0002"])
    assert (deposit["succ_code"], deposit["duplicate_code"]) == (["HL0001", "HL0002"], [])
    assert cards.deposit_codes(token, card_id, ["HL0002"])["duplicate_code"] == ["HL0002"]
    [card_row] = sandbox.state("cards")
    assert (card_row["card_id"], card_row["deposited"], card_row["quantity"]) == (
        card_id,
        ["HL0001", "HL0002"],
        5,
    )

    issued = sandbox.post("/cards/receive", {"user_id": user["id"], "card_id": card_id, "outer_str": "c7"})
    assert issued["code"] == "HL0001"
    got = cards.get_code(token, "HL0001", card_id=card_id)
    assert (got["openid"], got["user_card_status"], got["can_consume"]) == (openid, "NORMAL", True)

    consumed = cards.consume_code(token, "HL0001", card_id=card_id)
    assert (consumed["openid"], consumed["card"]["card_id"]) == (openid, card_id)
    assert sandbox.row("card_codes", code="HL0001")["status"] == "CONSUMED"
    for call in (cards.get_code, cards.consume_code):
        with pytest.raises(WeChatError) as exc:
            call(token, "HL0001", card_id=card_id)
        assert (exc.value.code, exc.value.final) == ("40099", True)
    unchecked = cards.get_code(token, "HL0001", check_consume=False)
    assert unchecked["user_card_status"] == "CONSUMED"

    with pytest.raises(WeChatError) as exc:
        cards.get_code(token, "NOSUCH", card_id=card_id)
    assert exc.value.code == "40116"

    # API-triggered pushes are queued at "now"; in-process nothing ticks, so deliver what is due.
    sandbox.post("/notifications/deliver")
    events = [(e.event, e.card_id, e.user_card_code) for e in sandbox.oa.events]
    assert events == [
        ("user_get_card", card_id, "HL0001"),
        ("user_consume_card", card_id, "HL0001"),
    ]
    assert sandbox.oa.events[0].fields["OuterStr"] == "c7"
    assert sandbox.oa.events[1].fields["ConsumeSource"] == "FROM_API"


def test_card_api_faults(sandbox: Sandbox) -> None:
    oa_client, _app = _oa(sandbox)
    cards = CardClient(ENDPOINTS)
    token = oa_client.fetch_access_token().token
    sandbox.fault("mp.card", "accept_then_error")
    with pytest.raises(WeChatError) as exc:
        cards.create_card(token, CARD)
    assert (exc.value.code, exc.value.retryable) == ("-1", True)
    # "accept_then_error": the card exists although the answer was an error.
    assert len(sandbox.state("cards")) == 1
    sandbox.fault("mp.card", "malformed")
    with pytest.raises(WeChatError) as exc:
        cards.create_card(token, CARD)
    assert (exc.value.code, exc.value.ambiguous) == ("UNPARSABLE", True)


def test_card_ext_signature_matches_wechats_rule(sandbox: Sandbox) -> None:
    """The sandbox does not verify cardExt (client-side only); cross-check our signer with its SHA-1 rule."""
    oa_client, app = _oa(sandbox)
    cards = CardClient(ENDPOINTS)
    user = sandbox.user()
    openid = user["openids"][app["appid"]]
    token = oa_client.fetch_access_token().token
    api_ticket = oa_client.get_ticket(token, "wx_card").ticket
    card_id = cards.create_card(token, CARD)
    cards.deposit_codes(token, card_id, ["EXT0001"])
    ts = str(int(time.time()))

    ext = card_ext(
        api_ticket=api_ticket,
        card_id=card_id,
        code="EXT0001",
        openid=openid,
        timestamp=ts,
        nonce_str="n0nce",
        outer_str="ext",
    )
    parsed = json.loads(ext)
    assert parsed["signature"] == sb_crypto.sha1_signature(
        api_ticket, ts, "n0nce", card_id, "EXT0001", openid
    )
    # Without code/openid the empty values still take part (§7b.1).
    bare = json.loads(card_ext(api_ticket=api_ticket, card_id=card_id, timestamp=ts, nonce_str="n2"))
    assert bare["signature"] == sb_crypto.sha1_signature(api_ticket, ts, "n2", card_id, "", "")

    # wx.addCard with that cardExt: the user receives exactly that code with our outer_str.
    got = sandbox.post(
        "/cards/receive",
        {"user_id": user["id"], "card_id": card_id, "code": parsed["code"], "outer_str": parsed["outer_str"]},
    )
    assert (got["code"], got["openid"]) == ("EXT0001", openid)
    assert cards.get_code(token, "EXT0001", card_id=card_id)["outer_str"] == "ext"
