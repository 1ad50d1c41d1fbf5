"""Official-account web OAuth, access tokens and JS-SDK tickets (protocol doc §2, §7b.1).

Server-URL messages (signature, safe mode, events) live in :mod:`wechat.oa_messages`; card APIs in
:mod:`wechat.cards`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

import requests

from wechat.api_http import ApiHttp
from wechat.endpoints import WeChatEndpoints
from wechat.errors import WeChatError
from wechat.gateway_log import GatewayHook
from wechat.miniprogram import AccessToken, fetch_access_token

__all__ = ["OAuthToken", "OfficialAccountClient", "Ticket"]

Scope = Literal["snsapi_base", "snsapi_userinfo"]
_STATE = re.compile(r"[A-Za-z0-9]{0,128}")


@dataclass(frozen=True, slots=True)
class OAuthToken:
    """A per-user web OAuth token (unrelated to the global access token, §2.2)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int
    openid: str
    scope: str
    unionid: str | None = None
    is_snapshotuser: bool = False


@dataclass(frozen=True, slots=True)
class Ticket:
    """A JS-SDK ticket (``jsapi`` or ``wx_card``) and its lifetime in seconds."""

    ticket: str = field(repr=False)
    expires_in: int


def _oauth_token(data: dict[str, Any], api: str) -> OAuthToken:
    try:
        return OAuthToken(
            access_token=str(data["access_token"]),
            refresh_token=str(data["refresh_token"]),
            expires_in=int(data["expires_in"]),
            openid=str(data["openid"]),
            scope=str(data.get("scope", "")),
            unionid=str(data["unionid"]) if data.get("unionid") else None,
            # "快照页" virtual users must be treated as anonymous (§2.2).
            is_snapshotuser=data.get("is_snapshotuser") == 1,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WeChatError(
            f"malformed OAuth token answer: {exc}", code="UNPARSABLE", ambiguous=True, api=api
        ) from exc


@dataclass(frozen=True)
class QrCode:
    """A parametric QR code: its ``ticket``, and ``url``, the text the code encodes (render it yourself)."""

    ticket: str
    url: str
    expire_seconds: int | None  # None: permanent


class OfficialAccountClient:
    """Calls for one official account; every URL comes from ``endpoints``."""

    def __init__(
        self,
        appid: str,
        secret: str,
        endpoints: WeChatEndpoints,
        session: requests.Session | None = None,
        hook: GatewayHook | None = None,
    ) -> None:
        self.appid = appid
        self._secret = secret
        self.endpoints = endpoints
        self.http = ApiHttp(endpoints, session, hook)

    def authorize_url(self, redirect_uri: str, *, scope: Scope = "snsapi_base", state: str = "") -> str:
        """Browser URL for web OAuth; parameter order and ``#wechat_redirect`` as WeChat requires (§2.1).

        ``state`` (≤ 128 ``[A-Za-z0-9]``) should be an unguessable per-session value checked on return.
        """
        if not _STATE.fullmatch(state):
            raise ValueError("state must be at most 128 characters of [A-Za-z0-9]")
        query = urlencode(
            [
                ("appid", self.appid),
                ("redirect_uri", redirect_uri),
                ("response_type", "code"),
                ("scope", scope),
                ("state", state),
            ]
        )
        return f"{self.endpoints.open('/connect/oauth2/authorize')}?{query}#wechat_redirect"

    def exchange_code(self, code: str) -> OAuthToken:
        """``sns/oauth2/access_token``: single-use code → per-user token (40029 / 40163 final)."""
        data = self.http.call(
            "GET",
            "/sns/oauth2/access_token",
            api="oauth.exchange_code",
            params={
                "appid": self.appid,
                "secret": self._secret,
                "code": code,
                "grant_type": "authorization_code",
            },
        )
        return _oauth_token(data, "oauth.exchange_code")

    def refresh_oauth_token(self, refresh_token: str) -> OAuthToken:
        """``sns/oauth2/refresh_token`` (§2.3); do not rely on stored refresh tokens for long."""
        data = self.http.call(
            "GET",
            "/sns/oauth2/refresh_token",
            api="oauth.refresh",
            params={"appid": self.appid, "grant_type": "refresh_token", "refresh_token": refresh_token},
        )
        return _oauth_token(data, "oauth.refresh")

    def userinfo(self, access_token: str, openid: str, *, lang: str = "zh_CN") -> dict[str, Any]:
        """``sns/userinfo`` (needs ``snsapi_userinfo``; 48001 otherwise)."""
        return self.http.call(
            "GET",
            "/sns/userinfo",
            api="oauth.userinfo",
            params={"access_token": access_token, "openid": openid, "lang": lang},
        )

    def fetch_access_token(self, *, stable: bool = False, force: bool = False) -> AccessToken:
        """Global access token for this account (the app keeps the single holder, §1.3)."""
        return fetch_access_token(self.http, self.appid, self._secret, stable=stable, force=force)

    def get_ticket(self, access_token: str, ticket_type: Literal["jsapi", "wx_card"]) -> Ticket:
        """``cgi-bin/ticket/getticket`` for ``wx.config`` (jsapi) or ``wx.addCard`` (wx_card)."""
        data = self.http.call(
            "GET",
            "/cgi-bin/ticket/getticket",
            api=f"ticket.{ticket_type}",
            params={"access_token": access_token, "type": ticket_type},
        )
        ticket, expires_in = data.get("ticket"), data.get("expires_in")
        if not isinstance(ticket, str) or not ticket or not isinstance(expires_in, int):
            raise WeChatError("ticket answer lacks ticket/expires_in", code="UNPARSABLE", ambiguous=True)
        return Ticket(ticket=ticket, expires_in=expires_in)

    def create_qrcode(self, access_token: str, scene: str, *, expire_seconds: int | None) -> QrCode:
        """``cgi-bin/qrcode/create`` with a string scene: permanent when ``expire_seconds`` is None (at most
        100 000 per account, never expire), else temporary (60 s … 30 days)."""
        if not 1 <= len(scene) <= 64:
            raise ValueError("a scene is 1..64 characters")
        body: dict[str, Any] = {"action_info": {"scene": {"scene_str": scene}}}
        if expire_seconds is None:
            body["action_name"] = "QR_LIMIT_STR_SCENE"
        else:
            if not 60 <= expire_seconds <= 30 * 86400:
                raise ValueError("a temporary code lives 60 s to 30 days")
            body |= {"action_name": "QR_STR_SCENE", "expire_seconds": expire_seconds}
        data = self.http.call(
            "POST",
            "/cgi-bin/qrcode/create",
            api="qrcode.create",
            params={"access_token": access_token},
            body=body,
        )
        ticket, url = data.get("ticket"), data.get("url")
        if not isinstance(ticket, str) or not ticket or not isinstance(url, str) or not url:
            raise WeChatError(
                "qrcode answer lacks ticket/url", code="UNPARSABLE", ambiguous=True, api="qrcode.create"
            )
        expires = data.get("expire_seconds")
        return QrCode(ticket=ticket, url=url, expire_seconds=expires if isinstance(expires, int) else None)

    def user_info(self, access_token: str, openid: str, *, lang: str = "zh_CN") -> dict[str, Any]:
        """``cgi-bin/user/info``: a follower's ``subscribe`` state and, when the account is bound to an
        open-platform account, their ``unionid`` (the key linking them to the mini-program identity)."""
        return self.http.call(
            "GET",
            "/cgi-bin/user/info",
            api="user.info",
            params={"access_token": access_token, "openid": openid, "lang": lang},
        )

    def send_template_message(
        self, access_token: str, *, touser: str, template_id: str, data: dict[str, str], url: str = ""
    ) -> str:
        """``cgi-bin/message/template/send`` to a follower (43004: they do not follow); the ``msgid``."""
        body: dict[str, Any] = {
            "touser": touser,
            "template_id": template_id,
            "data": {key: {"value": value} for key, value in data.items()},
        }
        if url:
            body["url"] = url
        answer = self.http.call(
            "POST",
            "/cgi-bin/message/template/send",
            api="template.send",
            params={"access_token": access_token},
            body=body,
        )
        return str(answer.get("msgid", ""))
