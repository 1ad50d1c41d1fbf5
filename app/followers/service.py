"""What a follower does, applied once: follow (attributed to the parametric QR code scanned), scan,
unfollow, text; the passive reply to give; the welcome job that links the follower to their consumer.

The message server answers within WeChat's 5 seconds, so a push only records what happened (a
``followers`` row, a scene's counters, the message once) and replies; who the follower is (``user/info``:
their unionid, the key shared with the mini-program) and what a follow earns (an invitation binding, the
``follower.subscribed`` event coupons subscribe to) is the welcome job's, after the commit.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from rq import Retry
from sqlalchemy import Table, func, select, update

from app.audit.service import Actor, record_audit
from app.campaigns.models import Campaign
from app.consumers.models import Consumer, WeChatIdentity
from app.consumers.service import identity_for_follower
from app.core.db import insert_unless_exists, utcnow
from app.core.errors import DomainError, InvalidInput, NotFound, Unavailable
from app.events.bus import Event, emit
from app.extensions import db
from app.followers.models import (
    Follower,
    FollowStatus,
    OaMessage,
    OaReply,
    QrPurpose,
    QrScene,
    ReplyKind,
    ReplyTrigger,
)
from app.gateway.clients import official_account_client
from app.gateway.tokens import with_access_token
from app.invitations.service import bind_invitation, invite_code_of
from app.merchants.models import Merchant
from app.queue.after_commit import enqueue_after_commit
from wechat.errors import WeChatError

logger = logging.getLogger("hongli.followers")

FOLLOWER_SUBSCRIBED = "follower.subscribed"
WELCOME_RETRY = Retry(max=5, interval=[10, 30, 60, 300, 900])
SCENE_PREFIX = "qrscene_"  # WeChat's prefix on a follow's EventKey when a parametric code was scanned


@dataclass(frozen=True)
class Pushed:
    """One message or event WeChat pushed (the fields the server reads; the rest are ignored)."""

    openid: str
    create_time: int
    msg_type: str
    event: str | None = None
    event_key: str | None = None
    content: str | None = None
    msg_id: str | None = None

    @property
    def dedupe_key(self) -> str:
        # WeChat's own advice: MsgId for messages, FromUserName + CreateTime for events (no MsgId).
        if self.msg_id:
            return f"msg:{self.msg_id}"
        return f"event:{self.openid}:{self.create_time}:{self.event or ''}"


@dataclass(frozen=True)
class Reply:
    kind: ReplyKind
    body: dict[str, Any]


_messages = cast(Table, OaMessage.__table__)
_RECORD_ONCE = insert_unless_exists(
    _messages,
    ("merchant_id", "dedupe_key", "openid", "msg_type", "event", "event_key", "content", "received_at"),
    key=("merchant_id", "dedupe_key"),
)
_followers = cast(Table, Follower.__table__)
_FIRST_FOLLOW = insert_unless_exists(
    _followers,
    ("merchant_id", "consumer_id", "openid", "status", "scene_id", "first_followed_at", "followed_at"),
    key=("merchant_id", "openid"),
)


# ---------------------------------------------------------------- pushes


def receive(*, merchant_id: int, oa_appid: str, pushed: Pushed) -> Reply | None:
    """Apply one push (once: a retry of the same message changes nothing) and say what to reply."""
    now = utcnow()
    message_id = db.session.execute(
        _RECORD_ONCE,
        {
            "merchant_id": merchant_id,
            "dedupe_key": pushed.dedupe_key[:160],
            "openid": pushed.openid,
            "msg_type": pushed.msg_type[:16],
            "event": (pushed.event or None) and pushed.event[:32],
            "event_key": (pushed.event_key or None) and pushed.event_key[:128],
            "content": (pushed.content or None) and pushed.content[:512],
            "received_at": now,
        },
    ).scalar()
    first_time = message_id is not None
    event = (pushed.event or "").lower()
    if pushed.msg_type == "event" and event == "subscribe":
        if message_id is not None:
            _on_follow(merchant_id, oa_appid, pushed, int(message_id), now)
        return reply_for(merchant_id, ReplyTrigger.SUBSCRIBE)
    if pushed.msg_type == "event" and event == "unsubscribe":
        if first_time:
            db.session.execute(
                update(Follower)
                .where(Follower.merchant_id == merchant_id, Follower.openid == pushed.openid)
                .values(status=FollowStatus.UNFOLLOWED, unfollowed_at=now)
            )
        return None  # WeChat shows nothing to someone who just left
    if pushed.msg_type == "event" and event == "scan":
        if first_time and (scene := _scene(merchant_id, pushed.event_key or "")) is not None:
            db.session.execute(update(QrScene).where(QrScene.id == scene.id).values(scans=QrScene.scans + 1))
        return None
    if pushed.msg_type == "text":
        return _keyword_reply(merchant_id, pushed.content or "")
    return None


def _scene(merchant_id: int, key: str) -> QrScene | None:
    if not key:
        return None
    return db.session.scalar(select(QrScene).where(QrScene.merchant_id == merchant_id, QrScene.scene == key))


def _on_follow(merchant_id: int, oa_appid: str, pushed: Pushed, message_id: int, now: datetime) -> None:
    key = pushed.event_key or ""
    scene = _scene(merchant_id, key.removeprefix(SCENE_PREFIX)) if key.startswith(SCENE_PREFIX) else None
    # A follower who signed in through the official account's web pages is a consumer already.
    consumer_id = db.session.scalar(
        select(WeChatIdentity.consumer_id).where(
            WeChatIdentity.appid == oa_appid, WeChatIdentity.openid == pushed.openid
        )
    )
    follower_id = db.session.execute(
        _FIRST_FOLLOW,
        {
            "merchant_id": merchant_id,
            "consumer_id": consumer_id,
            "openid": pushed.openid,
            "status": FollowStatus.FOLLOWING,
            "scene_id": scene.id if scene else None,
            "first_followed_at": now,
            "followed_at": now,
        },
    ).scalar()
    first_follow = follower_id is not None
    if not first_follow:
        follower_id = db.session.execute(
            update(Follower)
            .where(Follower.merchant_id == merchant_id, Follower.openid == pushed.openid)
            .values(status=FollowStatus.FOLLOWING, followed_at=now, unfollowed_at=None)
            .returning(Follower.id)
        ).scalar_one()
    if scene is not None:
        db.session.execute(
            update(QrScene)
            .where(QrScene.id == scene.id)
            .values(scans=QrScene.scans + 1, follows=QrScene.follows + 1)
        )
    enqueue_after_commit(
        "jobs.followers.welcome",
        follower_id,
        message_id,
        scene.id if scene else None,
        first_follow,
        retry=WELCOME_RETRY,
    )


def reply_for(merchant_id: int, trigger: ReplyTrigger, keyword: str = "") -> Reply | None:
    row = db.session.scalar(
        select(OaReply).where(
            OaReply.merchant_id == merchant_id, OaReply.trigger == trigger, OaReply.keyword == keyword
        )
    )
    return Reply(row.kind, dict(row.body)) if row is not None else None


def _keyword_reply(merchant_id: int, content: str) -> Reply | None:
    text = content.strip()
    if not text:
        return None
    # The longest keyword the message contains wins ("会员卡" before "卡").
    rows = db.session.scalars(
        select(OaReply).where(OaReply.merchant_id == merchant_id, OaReply.trigger == ReplyTrigger.KEYWORD)
    ).all()
    matches = sorted(
        (row for row in rows if row.keyword and row.keyword in text), key=lambda r: -len(r.keyword)
    )
    return Reply(matches[0].kind, dict(matches[0].body)) if matches else None


# ---------------------------------------------------------------- the welcome job


def welcome(follower_id: int, message_id: int, scene_id: int | None, first_follow: bool) -> None:
    """Link the follower to their consumer (by unionid, through ``user/info``), bind an inviter's code,
    and emit ``follower.subscribed`` once per follow (its key is the pushed message). Runs in a job."""
    follower = db.session.get(Follower, follower_id)
    if follower is None:
        return
    merchant = db.session.get(Merchant, follower.merchant_id)
    assert merchant is not None and merchant.oa_appid is not None
    if follower.consumer_id is None:
        unionid = _unionid(merchant, follower.openid)
        identity = identity_for_follower(merchant=merchant, openid=follower.openid, unionid=unionid)
        db.session.execute(
            update(Follower)
            .where(Follower.id == follower.id, Follower.consumer_id.is_(None))
            .values(consumer_id=identity.consumer_id)
        )
        db.session.refresh(follower)
    assert follower.consumer_id is not None
    scene = db.session.get(QrScene, scene_id) if scene_id is not None else None
    if first_follow and scene is not None and scene.purpose is QrPurpose.INVITER and scene.inviter_id:
        _bind_to_inviter(merchant.id, follower.consumer_id, scene.inviter_id)
    emit(
        Event(
            type=FOLLOWER_SUBSCRIBED,
            merchant_id=merchant.id,
            subject_type="follower",
            subject_id=follower.id,
            dedupe_key=f"{FOLLOWER_SUBSCRIBED}:{message_id}",
            payload={
                "follower_id": follower.id,
                "consumer_id": follower.consumer_id,
                "openid": follower.openid,
                "scene_id": scene.id if scene else None,
                "campaign_id": scene.campaign_id if scene else None,
                "channel": scene.channel if scene else None,
                "first_follow": first_follow,
            },
        )
    )


def _unionid(merchant: Merchant, openid: str) -> str | None:
    """The follower's unionid, if the account is bound to an open-platform account (else None)."""
    client = official_account_client(merchant)
    try:
        info = with_access_token(merchant, "oa", lambda token: client.user_info(token, openid))
    except WeChatError as exc:
        # The job is retried; a WeChat outage must not create a consumer that a later unionid would split.
        raise Unavailable(f"user/info failed: {exc.code}") from exc
    unionid = info.get("unionid")
    return unionid if isinstance(unionid, str) and unionid else None


def _bind_to_inviter(merchant_id: int, follower_consumer_id: int, inviter_id: int) -> None:
    code = invite_code_of(merchant_id=merchant_id, consumer_id=inviter_id).code
    try:
        with db.session.begin_nested():
            bind_invitation(merchant_id=merchant_id, consumer_id=follower_consumer_id, code=code)
    except DomainError as exc:
        # Already invited, an existing customer, their own code: the follow stands, unattributed.
        logger.info(
            "follow of consumer %s not bound to inviter %s: %s", follower_consumer_id, inviter_id, exc.message
        )


def resolve_unlinked(older_than: timedelta = timedelta(minutes=10), limit: int = 200) -> int:
    """Queue the welcome job again for followers still unlinked (its enqueue was lost or it gave up)."""
    cutoff = utcnow() - older_than
    rows = db.session.execute(
        select(Follower.id, OaMessage.id, Follower.scene_id)
        .join(
            OaMessage,
            (OaMessage.merchant_id == Follower.merchant_id)
            & (OaMessage.openid == Follower.openid)
            & (OaMessage.event == "subscribe"),
        )
        .where(Follower.consumer_id.is_(None), Follower.followed_at < cutoff)
        .order_by(Follower.id, OaMessage.id.desc())
        .limit(limit)
    ).all()
    seen: set[int] = set()
    for follower_id, message_id, scene_id in rows:
        if follower_id in seen:
            continue
        seen.add(follower_id)
        enqueue_after_commit(
            "jobs.followers.welcome", follower_id, message_id, scene_id, False, retry=WELCOME_RETRY
        )
    return len(seen)


# ---------------------------------------------------------------- console: QR codes and replies


def create_qr_code(
    *,
    merchant_id: int,
    purpose: QrPurpose,
    channel: str | None,
    inviter_id: int | None,
    campaign_id: int | None,
    expire_seconds: int | None,
    actor: Actor,
    staff_id: int | None,
) -> QrScene:
    """A parametric QR code for a channel, an inviter or a campaign (``expire_seconds`` None: permanent)."""
    merchant = db.session.get(Merchant, merchant_id)
    assert merchant is not None
    if not merchant.oa_appid:
        raise InvalidInput("this merchant has no official account", details={"reason": "no_official_account"})
    if purpose is QrPurpose.INVITER and (
        inviter_id is None
        or db.session.scalar(
            select(Consumer.id).where(Consumer.id == inviter_id, Consumer.merchant_id == merchant_id)
        )
        is None
    ):
        raise NotFound("no such consumer", details={"field": "inviter_id"})
    if purpose is QrPurpose.CAMPAIGN and (
        campaign_id is None
        or db.session.scalar(
            select(Campaign.id).where(Campaign.id == campaign_id, Campaign.merchant_id == merchant_id)
        )
        is None
    ):
        raise NotFound("no such campaign", details={"field": "campaign_id"})
    scene = "hl" + secrets.token_urlsafe(15)
    client = official_account_client(merchant)
    try:
        code = with_access_token(
            merchant, "oa", lambda token: client.create_qrcode(token, scene, expire_seconds=expire_seconds)
        )
    except WeChatError as exc:
        raise Unavailable(f"WeChat did not create the QR code: {exc.code}") from exc
    row = QrScene(
        merchant_id=merchant_id,
        scene=scene,
        purpose=purpose,
        channel=channel,
        inviter_id=inviter_id if purpose is QrPurpose.INVITER else None,
        campaign_id=campaign_id if purpose is QrPurpose.CAMPAIGN else None,
        permanent=expire_seconds is None,
        ticket=code.ticket,
        url=code.url,
        expires_at=None if expire_seconds is None else utcnow() + timedelta(seconds=expire_seconds),
        created_by_staff_id=staff_id,
    )
    db.session.add(row)
    db.session.flush()
    record_audit(
        actor=actor,
        action="followers.qr_code.create",
        target_type="qr_scene",
        target_id=row.id,
        merchant_id=merchant_id,
        after={"purpose": purpose.value, "channel": channel, "permanent": row.permanent},
    )
    return row


def qr_codes(*, merchant_id: int) -> list[QrScene]:
    return list(
        db.session.scalars(
            select(QrScene).where(QrScene.merchant_id == merchant_id).order_by(QrScene.id.desc())
        )
    )


def qr_code(*, merchant_id: int, qr_id: int) -> QrScene:
    row = db.session.scalar(select(QrScene).where(QrScene.id == qr_id, QrScene.merchant_id == merchant_id))
    if row is None:
        raise NotFound("no such QR code")
    return row


def set_reply(
    *,
    merchant_id: int,
    trigger: ReplyTrigger,
    keyword: str,
    kind: ReplyKind,
    body: dict[str, Any],
    actor: Actor,
) -> OaReply:
    """Create or replace the reply for ``trigger`` (and ``keyword``)."""
    keyword = keyword.strip() if trigger is ReplyTrigger.KEYWORD else ""
    if trigger is ReplyTrigger.KEYWORD and not keyword:
        raise InvalidInput("a keyword reply needs a keyword", details={"fields": {"keyword": ["Required."]}})
    row = db.session.scalar(
        select(OaReply).where(
            OaReply.merchant_id == merchant_id, OaReply.trigger == trigger, OaReply.keyword == keyword
        )
    )
    if row is None:
        row = OaReply(merchant_id=merchant_id, trigger=trigger, keyword=keyword, kind=kind, body=body)
        db.session.add(row)
    else:
        row.kind, row.body = kind, body
    db.session.flush()
    record_audit(
        actor=actor,
        action="followers.reply.set",
        target_type="oa_reply",
        target_id=row.id,
        merchant_id=merchant_id,
        after={"trigger": trigger.value, "keyword": keyword, "kind": kind.value},
    )
    return row


def replies(*, merchant_id: int) -> list[OaReply]:
    return list(
        db.session.scalars(select(OaReply).where(OaReply.merchant_id == merchant_id).order_by(OaReply.id))
    )


def delete_reply(*, merchant_id: int, reply_id: int, actor: Actor) -> None:
    row = db.session.scalar(select(OaReply).where(OaReply.id == reply_id, OaReply.merchant_id == merchant_id))
    if row is None:
        raise NotFound("no such reply")
    db.session.delete(row)
    record_audit(
        actor=actor,
        action="followers.reply.delete",
        target_type="oa_reply",
        target_id=reply_id,
        merchant_id=merchant_id,
    )


@dataclass(frozen=True)
class FollowerStats:
    following: int
    unfollowed: int
    unlinked: int


def follower_stats(*, merchant_id: int) -> FollowerStats:
    rows: dict[FollowStatus, int] = {
        status: int(count)
        for status, count in db.session.execute(
            select(Follower.status, func.count())
            .where(Follower.merchant_id == merchant_id)
            .group_by(Follower.status)
        )
    }
    unlinked = db.session.scalar(
        select(func.count()).where(Follower.merchant_id == merchant_id, Follower.consumer_id.is_(None))
    )
    return FollowerStats(
        following=int(rows.get(FollowStatus.FOLLOWING, 0)),
        unfollowed=int(rows.get(FollowStatus.UNFOLLOWED, 0)),
        unlinked=int(unlinked or 0),
    )
