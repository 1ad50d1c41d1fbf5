"""The official account's message server through the sandbox: a follower follows (by an inviter's,
a channel's or no QR code), scans, unfollows and writes; WeChat's retries apply once; the welcome job links
the follower to their consumer by unionid; plain, compatible and safe mode; forged pushes change nothing."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from wechatpy.crypto import WeChatCrypto

from app.auth.principals import Role
from app.consumers.models import AppKind, Consumer, WeChatIdentity
from app.events.models import DomainEvent
from app.followers.models import Follower, FollowStatus, OaMessage, QrScene
from app.invitations.models import InviteBinding
from app.queue import QueueName, get_queue
from tests.console_client import Console
from tests.factories import make_staff
from tests.payments.conftest import Shop
from wechat.sandbox import crypto as sb_crypto


def _console(shop: Shop, client: FlaskClient) -> Console:
    owner = make_staff(merchant=shop.merchant, role=Role.OWNER)
    return Console(client, shop.merchant.slug).login(owner.email)


def _qr(console: Console, **body: Any) -> dict[str, Any]:
    made = console.post("/api/console/v1/qr-codes", json=body)
    assert made.status_code == 201, made.json
    return dict(made.json)


def _run_welcome_jobs(app: Flask) -> int:
    """Run what the message server queued (the welcome jobs), as a worker would."""
    queue = get_queue(QueueName.DEFAULT)
    ran = 0
    for job in queue.jobs:
        if job.func_name == "jobs.followers.welcome":
            job.perform()
            queue.remove(job)
            ran += 1
    return ran


def _follower(db_session: Session, shop: Shop, openid: str) -> Follower:
    return db_session.scalars(
        select(Follower)
        .where(Follower.merchant_id == shop.merchant.id, Follower.openid == openid)
        .execution_options(populate_existing=True)
    ).one()


def _oa(shop: Shop) -> str:
    assert shop.merchant.oa_appid
    return shop.merchant.oa_appid


def test_a_follow_through_an_inviters_code_binds_the_follower_to_the_inviter(
    shop: Shop, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    console = _console(shop, client)
    code = _qr(console, purpose="inviter", inviter_id=shop.consumer_id)
    assert code["permanent"] is True and code["url"].startswith("http://weixin.qq.com/q/")
    image = console.get(f"/api/console/v1/qr-codes/{code['id']}/image.png")
    assert image.status_code == 200 and image.data.startswith(b"\x89PNG")
    ticket = db_session.get(QrScene, code["id"]).ticket  # type: ignore[union-attr]
    bob = shop.sandbox.user(id="bob", nickname="Bob")

    openid = shop.sandbox.post("/users/bob/follow", {"appid": _oa(shop), "ticket": ticket})["openid"]

    follower = _follower(db_session, shop, openid)
    assert (follower.status, follower.consumer_id, follower.scene_id) == (
        FollowStatus.FOLLOWING,
        None,
        code["id"],
    )
    assert _run_welcome_jobs(app) == 1
    follower = _follower(db_session, shop, openid)
    assert follower.consumer_id is not None
    consumer = db_session.get(Consumer, follower.consumer_id)
    assert consumer is not None and consumer.unionid == bob["unionid"]
    identity = db_session.scalars(select(WeChatIdentity).where(WeChatIdentity.openid == openid)).one()
    assert (identity.app_kind, identity.consumer_id) == (AppKind.OFFICIAL_ACCOUNT, consumer.id)
    binding = db_session.scalars(select(InviteBinding).where(InviteBinding.invitee_id == consumer.id)).one()
    assert binding.inviter_id == shop.consumer_id
    event = db_session.scalars(select(DomainEvent).where(DomainEvent.type == "follower.subscribed")).one()
    assert event.payload["consumer_id"] == consumer.id and event.payload["first_follow"] is True
    listed = console.get("/api/console/v1/qr-codes").json
    assert [(c["id"], c["scans"], c["follows"]) for c in listed] == [(code["id"], 1, 1)]


def test_a_follower_who_uses_the_mini_program_is_the_same_consumer(
    shop: Shop, app: Flask, db_session: Session
) -> None:
    # Alice signed in to the mini-program (the shop fixture); she now follows the official account.
    openid = shop.sandbox.post("/users/alice/follow", {"appid": _oa(shop)})["openid"]
    assert _run_welcome_jobs(app) == 1
    assert _follower(db_session, shop, openid).consumer_id == shop.consumer_id
    assert (
        db_session.scalar(select(func.count(Consumer.id)).where(Consumer.merchant_id == shop.merchant.id))
        == 1
    )


def test_wechats_retries_of_one_follow_apply_once(
    shop: Shop, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    shop.sandbox.user(id="carol", nickname="Carol")
    openid = shop.sandbox.post("/users/carol/follow", {"appid": _oa(shop)})["openid"]
    [note] = _oa_notes(shop)
    path = note["last_url"].split("://", 1)[1].split("/", 1)[1]
    for _ in range(2):  # WeChat sends the same push again when no answer came within 5 s
        again = client.post("/" + path, data=note["body"].encode(), headers=note["last_headers"])
        assert (again.status_code, again.data) == (200, b"success")

    assert db_session.scalar(select(func.count(OaMessage.id)).where(OaMessage.openid == openid)) == 1
    assert _run_welcome_jobs(app) == 1
    assert (
        db_session.scalar(select(func.count(DomainEvent.id)).where(DomainEvent.type == "follower.subscribed"))
        == 1
    )


def _oa_notes(shop: Shop) -> list[dict[str, Any]]:
    return [n for n in shop.sandbox.get("/notifications")["notifications"] if n["channel"] == "oa"]


def test_unfollow_then_follow_again_is_one_follower_following_again(
    shop: Shop, app: Flask, db_session: Session
) -> None:
    shop.sandbox.user(id="dan", nickname="Dan")
    openid = shop.sandbox.post("/users/dan/follow", {"appid": _oa(shop)})["openid"]
    shop.sandbox.post("/users/dan/unfollow", {"appid": _oa(shop)})
    assert _follower(db_session, shop, openid).status is FollowStatus.UNFOLLOWED
    time.sleep(
        1.01
    )  # events are keyed by their second (FromUserName + CreateTime): a new second, a new event
    shop.sandbox.post("/users/dan/follow", {"appid": _oa(shop)})

    follower = _follower(db_session, shop, openid)
    assert (follower.status, follower.unfollowed_at) == (FollowStatus.FOLLOWING, None)
    assert _run_welcome_jobs(app) == 2
    firsts = [
        e.payload["first_follow"]
        for e in db_session.scalars(select(DomainEvent).where(DomainEvent.type == "follower.subscribed"))
    ]
    assert sorted(firsts) == [False, True]


def test_scans_by_a_follower_are_counted_and_replies_follow_the_configuration(
    shop: Shop, client: FlaskClient, db_session: Session
) -> None:
    console = _console(shop, client)
    code = _qr(console, purpose="channel", channel="shelf-3", expire_seconds=3600)
    assert code["permanent"] is False and code["expires_at"]
    ticket = db_session.get(QrScene, code["id"]).ticket  # type: ignore[union-attr]
    for trigger, keyword, kind, body in (
        ("subscribe", "", "text", {"content": "欢迎关注 <红利>"}),
        ("keyword", "会员", "news", {"articles": [{"title": "会员日", "url": "https://example.com/vip"}]}),
    ):
        put = console.client.put(
            "/api/console/v1/oa/replies",
            json={"trigger": trigger, "keyword": keyword, "kind": kind, "body": body},
            headers=console.headers(),
        )
        assert put.status_code == 200, put.json
    shop.sandbox.user(id="erin", nickname="Erin")
    shop.sandbox.post("/users/erin/follow", {"appid": _oa(shop)})
    shop.sandbox.post("/users/erin/scan", {"appid": _oa(shop), "ticket": ticket})
    shop.sandbox.post("/users/erin/message", {"appid": _oa(shop), "content": "会员日有什么"})

    [scene] = console.get("/api/console/v1/qr-codes").json
    assert (scene["scans"], scene["follows"]) == (1, 0)  # scanned while following: no new follow
    answers = _oa_notes(shop)
    assert [n["attempts"][-1]["status"] for n in answers] == [200, 200, 200]
    bad = console.client.put(
        "/api/console/v1/oa/replies",
        json={"trigger": "subscribe", "kind": "text", "body": {"content": "x]]><Content>y"}},
        headers=console.headers(),
    )
    assert bad.status_code == 422


def _push(client: FlaskClient, shop: Shop, body: bytes, **query: str) -> Any:
    token = shop.sandbox.world.state.apps[_oa(shop)].token
    ts, nonce = query.pop("timestamp", str(int(time.time()))), query.pop("nonce", "123456")
    params = {
        "signature": sb_crypto.sha1_signature(token, ts, nonce),
        "timestamp": ts,
        "nonce": nonce,
    } | query
    return client.post(f"/wechat/{shop.merchant.slug}/oa", query_string=params, data=body)


def _subscribe_xml(shop: Shop, openid: str, created: int) -> bytes:
    original = shop.sandbox.world.state.apps[_oa(shop)].original_id
    return (
        f"<xml><ToUserName><![CDATA[{original}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[subscribe]]></Event></xml>"
    ).encode()


@pytest.mark.parametrize("compatible", [False, True])
def test_safe_mode_pushes_are_decrypted_and_replies_encrypted_with_wechatpy(
    shop: Shop, client: FlaskClient, db_session: Session, compatible: bool
) -> None:
    oa_app = shop.sandbox.world.state.apps[_oa(shop)]
    oa_app.safe_mode, oa_app.compatible_mode = True, compatible
    console = _console(shop, client)
    console.client.put(
        "/api/console/v1/oa/replies",
        json={"trigger": "subscribe", "kind": "text", "body": {"content": "欢迎"}},
        headers=console.headers(),
    )
    shop.sandbox.user(id="fay", nickname="Fay")
    openid = shop.sandbox.post("/users/fay/follow", {"appid": _oa(shop)})["openid"]
    assert _follower(db_session, shop, openid).status is FollowStatus.FOLLOWING
    # The sandbox opened the server's encrypted reply (wechatpy's) as WeChat would and shows it; wechatpy
    # opens the sandbox's push.
    [note] = _oa_notes(shop)
    assert note["state"] == "delivered" and "<Content><![CDATA[欢迎]]></Content>" in note["reply"]
    pushed = parse_qs(urlsplit(note["last_url"]).query)
    plain = WeChatCrypto(oa_app.token, oa_app.encoding_aes_key, _oa(shop)).decrypt_message(
        note["body"], pushed["msg_signature"][0], pushed["timestamp"][0], pushed["nonce"][0]
    )
    assert f"<FromUserName><![CDATA[{openid}]]></FromUserName>" in plain

    # The same kind of push encrypted by wechatpy (as another WeChat-side implementation would): the
    # server decrypts it, and its encrypted reply decrypts with wechatpy to the configured text.
    wx = WeChatCrypto(oa_app.token, oa_app.encoding_aes_key, _oa(shop))
    ts, nonce = str(int(time.time())), "778899"
    envelope = wx.encrypt_message(
        _subscribe_xml(shop, "o-wechatpy-user", int(time.time())).decode(), nonce, ts
    )
    encrypt = envelope.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    answer = _push(
        client,
        shop,
        envelope.encode(),
        timestamp=ts,
        nonce=nonce,
        encrypt_type="aes",
        msg_signature=sb_crypto.sha1_signature(oa_app.token, ts, nonce, encrypt),
    )
    assert answer.status_code == 200
    reply = wx.decrypt_message(answer.data.decode(), _reply_signature(answer.data), ts, nonce)
    assert "<Content><![CDATA[欢迎]]></Content>" in reply and "o-wechatpy-user" in reply
    assert _follower(db_session, shop, "o-wechatpy-user").status is FollowStatus.FOLLOWING


def _reply_signature(envelope: bytes) -> str:
    return envelope.decode().split("<MsgSignature><![CDATA[")[1].split("]]>")[0]


def test_the_url_check_echoes_only_a_signed_request(shop: Shop, client: FlaskClient) -> None:
    token = shop.sandbox.world.state.apps[_oa(shop)].token
    ts, nonce = str(int(time.time())), "42"
    signed = {"signature": sb_crypto.sha1_signature(token, ts, nonce), "timestamp": ts, "nonce": nonce}
    ok = client.get(f"/wechat/{shop.merchant.slug}/oa", query_string=signed | {"echostr": "echo-123"})
    assert (ok.status_code, ok.data) == (200, b"echo-123")
    forged = client.get(
        f"/wechat/{shop.merchant.slug}/oa", query_string=signed | {"signature": "0" * 40, "echostr": "x"}
    )
    assert forged.status_code == 403
    assert client.get("/wechat/no-such-shop/oa", query_string=signed).status_code == 404


def test_forged_stale_tampered_and_hostile_pushes_change_nothing(
    shop: Shop, client: FlaskClient, db_session: Session
) -> None:
    now = int(time.time())
    body = _subscribe_xml(shop, "o-mallory", now)
    token = shop.sandbox.world.state.apps[_oa(shop)].token
    ts = str(now)
    forged = client.post(
        f"/wechat/{shop.merchant.slug}/oa",
        query_string={
            "signature": sb_crypto.sha1_signature("not-the-token", ts, "1"),
            "timestamp": ts,
            "nonce": "1",
        },
        data=body,
    )
    stale = _push(client, shop, body, timestamp=str(now - 3600))
    xxe = _push(
        client,
        shop,
        b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<xml><FromUserName>&x;</FromUserName><MsgType>event</MsgType><Event>subscribe</Event>"
        b"<CreateTime>1</CreateTime></xml>",
    )
    oa_app = shop.sandbox.world.state.apps[_oa(shop)]
    good = sb_crypto.wx_encrypt(oa_app.encoding_aes_key, _oa(shop), body, b"0" * 16)
    tampered = good[:-8] + ("A" if good[-8] != "A" else "B") + good[-7:]
    bad_cipher = _push(
        client,
        shop,
        f"<xml><Encrypt><![CDATA[{tampered}]]></Encrypt></xml>".encode(),
        timestamp=ts,
        encrypt_type="aes",
        msg_signature=sb_crypto.sha1_signature(token, ts, "123456", good),  # signed the original
    )
    assert [r.status_code for r in (forged, stale, xxe, bad_cipher)] == [403, 403, 403, 403]
    assert db_session.scalar(select(func.count(OaMessage.id))) == 0
    assert db_session.scalar(select(func.count(Follower.id))) == 0
