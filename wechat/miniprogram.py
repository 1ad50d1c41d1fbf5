"""Mini-program server APIs: login (jscode2session), access tokens, encryptedData (protocol doc §1)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

import requests

from wechat.api_http import ApiHttp
from wechat.crypto import aes_cbc_decrypt
from wechat.endpoints import WeChatEndpoints
from wechat.errors import VerificationError, WeChatError
from wechat.gateway_log import GatewayHook

__all__ = ["AccessToken", "LoginSession", "MiniProgramClient", "decrypt_user_data", "fetch_access_token"]


@dataclass(frozen=True, slots=True)
class LoginSession:
    """Result of ``jscode2session``; ``session_key`` is a secret (never log it)."""

    openid: str
    session_key: str = field(repr=False)
    unionid: str | None = None


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A global access token and its lifetime in seconds as reported by WeChat."""

    token: str = field(repr=False)
    expires_in: int


def _token(data: dict[str, Any], api: str) -> AccessToken:
    token, expires_in = data.get("access_token"), data.get("expires_in")
    if not isinstance(token, str) or not token or not isinstance(expires_in, int):
        raise WeChatError(
            "token answer lacks access_token/expires_in", code="UNPARSABLE", ambiguous=True, api=api
        )
    return AccessToken(token=token, expires_in=expires_in)


def fetch_access_token(
    http: ApiHttp, appid: str, secret: str, *, stable: bool = False, force: bool = False
) -> AccessToken:
    """``cgi-bin/token`` or, with ``stable``, ``cgi-bin/stable_token`` (§1.3, §1.4); shared with the OA."""
    if stable:
        data = http.call(
            "POST",
            "/cgi-bin/stable_token",
            api="token.stable",
            body={
                "grant_type": "client_credential",
                "appid": appid,
                "secret": secret,
                "force_refresh": force,
            },
        )
        return _token(data, "token.stable")
    data = http.call(
        "GET",
        "/cgi-bin/token",
        api="token",
        params={"grant_type": "client_credential", "appid": appid, "secret": secret},
    )
    return _token(data, "token")


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    phone: str = field(repr=False)  # with the country code when not mainland China
    pure: str = field(repr=False)
    country_code: str


class MiniProgramClient:
    """Calls for one mini-program; plain ``requests`` so every URL comes from ``endpoints.api_base``."""

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
        self.http = ApiHttp(endpoints, session, hook)

    def code_to_session(self, js_code: str) -> LoginSession:
        """Exchange a ``wx.login`` code. 40029 / 40163 are final (ask for a new code); -1, 45011 retryable."""
        data = self.http.call(
            "GET",
            "/sns/jscode2session",
            api="wxa.jscode2session",
            params={
                "appid": self.appid,
                "secret": self._secret,
                "js_code": js_code,
                "grant_type": "authorization_code",
            },
        )
        openid, session_key = data.get("openid"), data.get("session_key")
        if not isinstance(openid, str) or not openid or not isinstance(session_key, str) or not session_key:
            raise WeChatError("jscode2session lacks openid/session_key", code="UNPARSABLE", ambiguous=True)
        unionid = data.get("unionid")
        return LoginSession(
            openid=openid, session_key=session_key, unionid=unionid if isinstance(unionid, str) else None
        )

    def phone_number(self, access_token: str, code: str) -> PhoneNumber:
        """``wxa/business/getuserphonenumber``: the number behind the ``code`` a ``getPhoneNumber`` button
        gave (single use, 5 minutes), checked to be for this mini-program (its watermark's appid)."""
        data = self.http.call(
            "POST",
            "/wxa/business/getuserphonenumber",
            api="wxa.phone_number",
            params={"access_token": access_token},
            body={"code": code},
        )
        info = data.get("phone_info")
        if not isinstance(info, dict) or not isinstance(info.get("phoneNumber"), str):
            raise WeChatError("phone answer lacks phone_info", code="UNPARSABLE", ambiguous=True)
        watermark = info.get("watermark")
        if not isinstance(watermark, dict) or watermark.get("appid") != self.appid:
            raise WeChatError("phone number for another app", code="APPID_MISMATCH", ambiguous=False)
        return PhoneNumber(
            phone=info["phoneNumber"],
            pure=str(info.get("purePhoneNumber", "")),
            country_code=str(info.get("countryCode", "")),
        )

    def send_subscribe_message(
        self, access_token: str, *, touser: str, template_id: str, data: dict[str, str], page: str = ""
    ) -> None:
        """``cgi-bin/message/subscribe/send``: one message for one consent the user gave to the template
        (43101: the user has not accepted it, or has used every consent)."""
        body: dict[str, Any] = {
            "touser": touser,
            "template_id": template_id,
            "data": {key: {"value": value} for key, value in data.items()},
        }
        if page:
            body["page"] = page
        self.http.call(
            "POST",
            "/cgi-bin/message/subscribe/send",
            api="wxa.subscribe_send",
            params={"access_token": access_token},
            body=body,
        )

    def fetch_access_token(self, *, stable: bool = False, force: bool = False) -> AccessToken:
        """A global access token for this mini-program (the app caches it; one holder only, §1.3)."""
        return fetch_access_token(self.http, self.appid, self._secret, stable=stable, force=force)


def decrypt_user_data(session_key: str, encrypted_data: str, iv: str, appid: str) -> dict[str, Any]:
    """Decrypt ``encryptedData`` (AES-128-CBC, §1.2) and require ``watermark.appid == appid``.

    Raises ``VerificationError`` (final) on a bad key, padding, JSON or watermark.
    """
    try:
        key = base64.b64decode(session_key, validate=True)
        iv_bytes = base64.b64decode(iv, validate=True)
        plain = aes_cbc_decrypt(key, iv_bytes, base64.b64decode(encrypted_data, validate=True))
        data = json.loads(plain)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(
            "encryptedData does not decrypt", code="DECRYPT_FAILED", ambiguous=False
        ) from exc
    watermark = data.get("watermark") if isinstance(data, dict) else None
    if not isinstance(watermark, dict) or watermark.get("appid") != appid:
        raise VerificationError(
            "encryptedData watermark is for another appid", code="WATERMARK", ambiguous=False
        )
    return data
