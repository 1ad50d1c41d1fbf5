"""Official-account web OAuth for H5 pages: a browser-bound ``state`` and safe return URLs (§2)."""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

from app.consumers.service import LoginResult, login_official_account
from app.core.errors import InvalidInput
from app.gateway.clients import official_account_client
from app.merchants.service import active_merchant_for_appid

STATE_COOKIE = "hongli_oauth"
STATE_MAX_AGE_SECONDS = 600
_RELATIVE = re.compile(r"^/(?![/\\])[^\s]*$")


@dataclass(frozen=True)
class OAuthStart:
    authorize_url: str
    cookie: str


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="hongli.oauth-state")


def safe_next(next_url: str, allowed_origins: list[str]) -> str:
    """``next_url`` if it is a path on this site or on one of the merchant's H5 origins; else refuse."""
    if _RELATIVE.match(next_url):
        return next_url
    parts = urlsplit(next_url)
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    if parts.scheme in ("http", "https") and origin in {o.lower() for o in allowed_origins}:
        return next_url
    raise InvalidInput(
        "next must be a path or a URL on one of the merchant's H5 origins",
        details={"fields": {"next": ["not an allowed return URL"]}},
    )


def callback_url() -> str:
    base = current_app.extensions["hongli.settings"].web.public_base_url.rstrip("/")
    return f"{base}/h5/v1/oauth/callback"


def start_oauth(*, appid: str, scope: str, next_url: str) -> OAuthStart:
    """The WeChat authorize URL, and the signed cookie that binds its ``state`` to this browser."""
    merchant = active_merchant_for_appid(appid)
    if merchant.oa_appid != appid:
        raise InvalidInput("unknown official-account appid", details={"fields": {"appid": ["unknown"]}})
    target = safe_next(next_url, list(merchant.h5_origins or []))
    state = secrets.token_hex(16)
    url = official_account_client(merchant).authorize_url(callback_url(), scope=scope, state=state)  # type: ignore[arg-type]
    cookie = _serializer().dumps({"state": state, "appid": appid, "next": target})
    return OAuthStart(url, cookie)


def finish_oauth(*, cookie: str | None, state: str, code: str | None, ip: str | None) -> str:
    """Check ``state`` against this browser's cookie, log the follower in; the URL to send them to.

    The token travels in the URL fragment (never sent to servers or logged by proxies).
    """
    try:
        saved = _serializer().loads(cookie or "", max_age=STATE_MAX_AGE_SECONDS)
    except BadSignature:
        raise InvalidInput(
            "this sign-in link expired or was opened in another browser; start again",
            details={"reason": "state_mismatch"},
        ) from None
    if not isinstance(saved, dict) or not hmac.compare_digest(str(saved.get("state", "")), state):
        raise InvalidInput(
            "sign-in state does not match this browser; start again", details={"reason": "state_mismatch"}
        )
    next_url = str(saved["next"])
    if not code:
        # The follower declined the authorization screen.
        return f"{next_url}#{urlencode({'error': 'access_denied'})}"
    result: LoginResult = login_official_account(appid=str(saved["appid"]), code=code, ip=ip)
    fragment = urlencode({"token": result.token, "expires_in": result.expires_in, "appid": saved["appid"]})
    return f"{next_url}#{fragment}"
