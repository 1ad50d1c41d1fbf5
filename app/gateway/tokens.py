"""The access tokens of a merchant's official account and mini-program, one holder per deployment.

WeChat's ``stable_token`` answers the same token to every caller while it is valid (a plain
``cgi-bin/token`` call would invalidate the one other processes hold), and the token is kept in Redis,
shared by every web and worker process, until five minutes before it expires. The token is a secret:
it lives only in Redis and in memory, never in logs or the database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar

from flask import current_app

from app.gateway.clients import mini_program_client, official_account_client
from app.merchants.models import Merchant
from app.queue.queues import get_redis
from app.settings import Settings
from wechat.errors import WeChatError

Kind = Literal["oa", "mp"]
MARGIN_SECONDS = 300  # refresh a little before WeChat's expiry, so no call carries a token about to die


def _key(appid: str) -> str:
    settings: Settings = current_app.extensions["hongli.settings"]
    return f"{settings.queue.prefix}:wx-token:{appid}"


def access_token(merchant: Merchant, kind: Kind = "oa", *, refresh: bool = False) -> str:
    """The current access token of the merchant's official account (``oa``) or mini-program (``mp``).

    ``refresh=True`` after WeChat refused the token (40001 / 42001): a new one is fetched with
    ``force_refresh`` and replaces the cached one.
    """
    client = official_account_client(merchant) if kind == "oa" else mini_program_client(merchant)
    redis = get_redis()
    key = _key(client.appid)
    if not refresh:
        cached = redis.get(key)
        if isinstance(cached, bytes) and cached:
            return cached.decode("ascii")
    fetched = client.fetch_access_token(stable=True, force=refresh)
    redis.set(key, fetched.token, ex=max(fetched.expires_in - MARGIN_SECONDS, 60))
    return fetched.token


# WeChat's answers when the token itself is the problem: fetch a new one and try once more.
TOKEN_REFUSED = frozenset({"40001", "40014", "42001"})


T = TypeVar("T")


def with_access_token(merchant: Merchant, kind: Kind, call: Callable[[str], T]) -> T:
    """``call(token)``; when WeChat refuses the cached token (it was refreshed elsewhere, or revoked),
    once more with a freshly fetched one."""
    try:
        return call(access_token(merchant, kind))
    except WeChatError as exc:
        if exc.code not in TOKEN_REFUSED:
            raise
        return call(access_token(merchant, kind, refresh=True))
