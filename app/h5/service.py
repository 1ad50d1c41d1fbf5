"""The H5 session of a follower and the JS-SDK configuration of a page.

A follower signs in through the official account's web OAuth (``/h5/v1/oauth/start``), which lands on
``/h5/m/<slug>/signed-in`` with the consumer token in the URL fragment; that page hands the token to
``/h5/m/<slug>/session``, which keeps it in an HttpOnly cookie scoped to the merchant's pages. Forms carry
a CSRF token derived from the session (HMAC), so another site cannot post as the follower.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select

from app.auth.principals import ConsumerPrincipal
from app.consumers.sessions import authenticate_consumer
from app.core.errors import Unauthenticated
from app.extensions import db
from app.gateway.clients import official_account_client
from app.gateway.tokens import with_access_token
from app.merchants.models import Merchant, MerchantStatus
from app.queue.queues import get_redis
from app.settings import Settings
from wechat.crypto import jsapi_config_signature

COOKIE = "hl_h5"


def merchant_by_slug(slug: str) -> Merchant | None:
    merchant = db.session.scalar(select(Merchant).where(Merchant.slug == slug))
    if merchant is None or not merchant.oa_appid or merchant.status is not MerchantStatus.ACTIVE:
        return None
    return merchant


def follower(merchant: Merchant, token: str | None) -> ConsumerPrincipal | None:
    """The signed-in follower of ``merchant`` behind the cookie's token, or None (sign in again)."""
    if not token:
        return None
    try:
        principal = authenticate_consumer(token=token, appid=merchant.oa_appid or "")
    except Unauthenticated:
        return None
    return principal if principal.merchant_id == merchant.id else None


def csrf_token(principal: ConsumerPrincipal) -> str:
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, f"h5-csrf:{principal.session_id}".encode(), hashlib.sha256).hexdigest()


def csrf_ok(principal: ConsumerPrincipal, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token(principal), presented or "")


@dataclass(frozen=True)
class JsConfig:
    """What ``wx.config`` needs for one page URL (without its fragment)."""

    app_id: str
    timestamp: int
    nonce_str: str
    signature: str


def _ticket_key(appid: str) -> str:
    settings: Settings = current_app.extensions["hongli.settings"]
    return f"{settings.queue.prefix}:wx-jsapi-ticket:{appid}"


def jsapi_ticket(merchant: Merchant, *, refresh: bool = False) -> str:
    """The official account's ``jsapi_ticket``, kept in Redis for every process until 5 minutes before
    it expires (WeChat limits how often it may be fetched)."""
    redis = get_redis()
    key = _ticket_key(merchant.oa_appid or "")
    if not refresh:
        cached = redis.get(key)
        if isinstance(cached, bytes) and cached:
            return cached.decode("ascii")
    client = official_account_client(merchant)
    ticket = with_access_token(merchant, "oa", lambda token: client.get_ticket(token, "jsapi"))
    redis.set(key, ticket.ticket, ex=max(ticket.expires_in - 300, 60))
    return ticket.ticket


def js_config(merchant: Merchant, page_url: str) -> JsConfig:
    """``wx.config`` for ``page_url`` (the URL the follower's browser shows, without ``#…``)."""
    url = page_url.split("#", 1)[0]
    timestamp, nonce = int(time.time()), secrets.token_urlsafe(12)
    signature = jsapi_config_signature(
        jsapi_ticket=jsapi_ticket(merchant), noncestr=nonce, timestamp=str(timestamp), url=url
    )
    return JsConfig(merchant.oa_appid or "", timestamp, nonce, signature)
