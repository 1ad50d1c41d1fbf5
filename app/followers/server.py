"""The message server of a merchant's official account (``/wechat/<slug>/oa``), as WeChat calls it.

URL verification (``GET`` with ``echostr``), then pushes (``POST``) in plaintext, compatible or safe
mode: ``signature`` over token/timestamp/nonce always, and in compatible/safe mode (``encrypt_type=aes``)
``msg_signature`` over the ``<Encrypt>`` payload too, which is then decrypted and the plaintext ignored.
Timestamps outside ±5 minutes are refused (a captured push cannot be replayed later). Every XML document
is parsed defused first (no DTD, no entities); wechatpy then parses the message and renders replies.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from wechatpy import parse_message
from wechatpy.messages import BaseMessage, TextMessage
from wechatpy.replies import ArticlesReply, TextReply

from app.core.db import utcnow
from app.followers.models import ReplyKind
from app.followers.service import SCENE_PREFIX, Pushed, Reply, receive
from app.merchants.schemas import SLUG
from app.merchants.snapshots import MerchantSnapshot, merchant_snapshot
from wechat.errors import WeChatError
from wechat.oa_messages import MessageCrypto, check_server_signature
from wechat.xml import parse_xml

logger = logging.getLogger("hongli.followers")
WINDOW_SECONDS = 300
_SLUG = cast(re.Pattern[str], SLUG.regex)


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    content_type: str = "text/plain"


FORBIDDEN = Answer(403, "forbidden")
NOT_FOUND = Answer(404, "unknown account")
# WeChat's own advice: answer "success" (or nothing) when there is nothing to say, so it neither retries
# nor tells the user "this account cannot serve you right now".
SUCCESS = Answer(200, "success")


def _account(slug: str) -> MerchantSnapshot | None:
    merchant = merchant_snapshot(slug) if _SLUG.match(slug) else None
    if merchant is None or not merchant.oa_appid or not merchant.secrets.oa_token:
        return None
    return merchant


def _fresh(timestamp: str) -> bool:
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return False
    return abs(utcnow().timestamp() - int(timestamp)) <= WINDOW_SECONDS


def verify_url(slug: str, args: Mapping[str, str]) -> Answer:
    """The URL check WeChat makes when the server URL is saved: echo ``echostr`` if the signature holds."""
    merchant = _account(slug)
    if merchant is None:
        return NOT_FOUND
    signature, timestamp, nonce = args.get("signature", ""), args.get("timestamp", ""), args.get("nonce", "")
    if not check_server_signature(merchant.secrets.oa_token, signature, timestamp, nonce):
        logger.warning("refused an OA URL check for %s: bad signature", slug)
        return FORBIDDEN
    return Answer(200, args.get("echostr", ""))


def handle_push(slug: str, args: Mapping[str, str], body: bytes) -> Answer:
    """Verify, decrypt, apply once and reply to one push."""
    merchant = _account(slug)
    if merchant is None:
        return NOT_FOUND
    token = merchant.secrets.oa_token
    timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
    if not check_server_signature(token, args.get("signature", ""), timestamp, nonce):
        logger.warning("refused an OA push for %s: bad signature", slug)
        return FORBIDDEN
    if not _fresh(timestamp):
        logger.warning("refused an OA push for %s: timestamp outside the window", slug)
        return FORBIDDEN
    encrypted = args.get("encrypt_type", "raw") == "aes"
    crypto = MessageCrypto(token, merchant.secrets.oa_encoding_aes_key, merchant.oa_appid or "")
    try:
        if encrypted:
            inner = crypto.decrypt_message(body, args.get("msg_signature", ""), timestamp, nonce)
        else:
            inner = body
        parse_xml(inner)  # defused: a DTD or an entity is refused before wechatpy reads the XML
        message = parse_message(inner.decode("utf-8"))
    except (WeChatError, UnicodeDecodeError, KeyError, ValueError) as exc:
        logger.warning("refused an OA push for %s: %s", slug, getattr(exc, "code", type(exc).__name__))
        return FORBIDDEN
    pushed = _pushed(message)
    if pushed is None:
        return SUCCESS
    reply = receive(merchant_id=merchant.id, oa_appid=merchant.oa_appid or "", pushed=pushed)
    if reply is None:
        return SUCCESS
    xml = _render(reply, message)
    if encrypted:
        return Answer(
            200,
            crypto.encrypt_reply(xml.encode("utf-8"), nonce=nonce, timestamp=timestamp),
            "application/xml",
        )
    return Answer(200, xml, "application/xml")


def _pushed(message: BaseMessage) -> Pushed | None:
    """What the server reads of a parsed message; None for a kind it ignores (images, menu clicks, …)."""
    source, created = str(message.source or ""), int(message.time or 0)
    if not source:
        return None
    if isinstance(message, TextMessage):
        return Pushed(source, created, "text", content=message.content, msg_id=str(message.id or "") or None)
    if message.type != "event":
        return None
    event = str(getattr(message, "event", "") or "")
    scene = str(getattr(message, "scene_id", "") or "")
    if event == "subscribe_scan":  # wechatpy's name for a follow through a parametric code
        return Pushed(source, created, "event", event="subscribe", event_key=SCENE_PREFIX + scene)
    if event in ("subscribe", "unsubscribe"):
        return Pushed(source, created, "event", event=event)
    if event == "scan":
        return Pushed(source, created, "event", event="SCAN", event_key=scene)
    return None


def _render(reply: Reply, message: BaseMessage) -> str:
    if reply.kind is ReplyKind.TEXT:
        return str(TextReply(content=str(reply.body.get("content", "")), message=message).render())
    articles = [
        {
            "title": str(item.get("title", "")),
            "description": str(item.get("description", "")),
            "image": str(item.get("image_url", "")),
            "url": str(item.get("url", "")),
        }
        for item in reply.body.get("articles", [])
    ]
    news = ArticlesReply(message=message, articles=articles)
    return str(news.render())
