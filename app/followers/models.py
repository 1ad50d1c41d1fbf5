"""Followers of a merchant's official account, the parametric QR codes that bring them, the messages
WeChat pushed (each applied once) and the passive replies the merchant configured."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, IdPK, str_enum, utcnow


class FollowStatus(StrEnum):
    FOLLOWING = "following"
    UNFOLLOWED = "unfollowed"


class QrPurpose(StrEnum):
    CHANNEL = "channel"  # a poster, a shelf, a flyer: counted per channel
    INVITER = "inviter"  # a consumer's own code: a follow binds the follower to them like an invitation
    CAMPAIGN = "campaign"  # a campaign's code: follows counted for the campaign


class ReplyTrigger(StrEnum):
    SUBSCRIBE = "subscribe"
    KEYWORD = "keyword"


class ReplyKind(StrEnum):
    TEXT = "text"
    NEWS = "news"


class QrScene(Base):
    """A parametric QR code (``qrcode/create``): WeChat hands back its ``scene`` in the follow or scan."""

    __tablename__ = "qr_scenes"
    __table_args__ = (UniqueConstraint("merchant_id", "scene"),)

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    scene: Mapped[str] = mapped_column(String(64))  # scene_str, ours: "hl" + random
    purpose: Mapped[QrPurpose] = mapped_column(str_enum(QrPurpose))
    channel: Mapped[str | None] = mapped_column(String(64))
    inviter_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("consumers.id"))
    campaign_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("campaigns.id"))
    permanent: Mapped[bool]
    ticket: Mapped[str] = mapped_column(String(255))
    url: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime | None]
    scans: Mapped[int] = mapped_column(default=0)
    follows: Mapped[int] = mapped_column(default=0)
    created_by_staff_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("staff_accounts.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Follower(Base):
    """One openid following (or having followed) the merchant's official account, linked to its consumer."""

    __tablename__ = "followers"
    __table_args__ = (UniqueConstraint("merchant_id", "openid"),)

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    # None until the welcome job has asked WeChat who this is (unionid) and linked or created the consumer.
    consumer_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("consumers.id"), index=True)
    openid: Mapped[str] = mapped_column(String(64))
    status: Mapped[FollowStatus] = mapped_column(str_enum(FollowStatus))
    scene_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("qr_scenes.id")
    )  # of the first follow
    first_followed_at: Mapped[datetime]
    followed_at: Mapped[datetime]
    unfollowed_at: Mapped[datetime | None]


class OaMessage(Base):
    """A message or event WeChat pushed, recorded once: WeChat retries (three times, 5 s apart) until it
    gets an answer, and a retry must not act twice. Key: ``msg:<MsgId>``, or for events (no MsgId)
    ``event:<FromUserName>:<CreateTime>:<Event>``."""

    __tablename__ = "oa_messages"
    __table_args__ = (UniqueConstraint("merchant_id", "dedupe_key"),)

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    dedupe_key: Mapped[str] = mapped_column(String(160))
    openid: Mapped[str] = mapped_column(String(64))
    msg_type: Mapped[str] = mapped_column(String(16))
    event: Mapped[str | None] = mapped_column(String(32))
    event_key: Mapped[str | None] = mapped_column(String(128))
    content: Mapped[str | None] = mapped_column(String(512))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class OaReply(Base):
    """A passive reply the merchant configured: on follow, or to a text message containing a keyword."""

    __tablename__ = "oa_replies"
    __table_args__ = (UniqueConstraint("merchant_id", "trigger", "keyword"),)

    id: Mapped[IdPK]
    merchant_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("merchants.id"))
    trigger: Mapped[ReplyTrigger] = mapped_column(str_enum(ReplyTrigger))
    keyword: Mapped[str] = mapped_column(String(64), default="")  # "" for the subscribe reply
    kind: Mapped[ReplyKind] = mapped_column(str_enum(ReplyKind))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
