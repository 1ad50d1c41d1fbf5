"""Consumer-facing endpoints: mini-program login and profile, official-account H5 OAuth."""

from __future__ import annotations

from typing import Any

from flask import redirect, request
from werkzeug.wrappers import Response

from app.auth.guards import APPID_HEADER, consumer_required, current_consumer, public
from app.consumers import service
from app.consumers.oauth import STATE_COOKIE, STATE_MAX_AGE_SECONDS, finish_oauth, start_oauth
from app.consumers.schemas import (
    ConsumerSchema,
    EncryptedDataSchema,
    LoginResultSchema,
    MpLoginSchema,
    OAuthCallbackSchema,
    OAuthStartSchema,
    PhoneCodeSchema,
)
from app.consumers.sessions import revoke_session
from app.core.api import Blueprint
from app.core.tx import commit

mp = Blueprint(
    "mp_identity", __name__, url_prefix="/api/mp/v1", description="Mini-program login and profile."
)
h5 = Blueprint(
    "h5_oauth", __name__, url_prefix="/h5/v1", description="Official-account web OAuth for H5 pages."
)


@mp.route("/login", methods=["POST"])
@public
@mp.arguments(MpLoginSchema)
@mp.response(200, LoginResultSchema)
def login(body: dict[str, str]) -> Any:
    """Exchange a `wx.login` code for a token (`Authorization: Bearer …` plus `X-WX-AppId`)."""
    result = service.login_miniprogram(appid=body["appid"], code=body["code"], ip=request.remote_addr)
    commit()
    return result


@mp.route("/me")
@consumer_required
@mp.response(200, ConsumerSchema)
def me() -> Any:
    """The signed-in consumer."""
    principal = current_consumer()
    return service.get_consumer(merchant_id=principal.merchant_id, consumer_id=principal.consumer_id)


@mp.route("/me/profile", methods=["POST"])
@consumer_required
@mp.arguments(EncryptedDataSchema)
@mp.response(200, ConsumerSchema)
def update_profile(body: dict[str, str]) -> Any:
    """Store nickname and avatar from `wx.getUserInfo` encryptedData (watermark appid checked)."""
    consumer = service.update_profile(
        consumer_id=current_consumer().consumer_id, appid=request.headers[APPID_HEADER], **body
    )
    commit()
    return consumer


@mp.route("/me/phone", methods=["POST"])
@consumer_required
@mp.arguments(EncryptedDataSchema)
@mp.response(200, ConsumerSchema)
def update_phone(body: dict[str, str]) -> Any:
    """Store the phone number from `getPhoneNumber` encryptedData."""
    consumer = service.update_phone(
        consumer_id=current_consumer().consumer_id, appid=request.headers[APPID_HEADER], **body
    )
    commit()
    return consumer


@mp.route("/me/phone-number", methods=["POST"])
@consumer_required
@mp.arguments(PhoneCodeSchema)
@mp.response(200, ConsumerSchema)
def phone_number(body: dict[str, str]) -> Any:
    """Store the phone number behind a `getPhoneNumber` button's code (the current flow; `/me/phone`
    keeps the legacy encryptedData one). 422 for a used, expired or foreign code."""
    consumer = service.phone_from_code(
        consumer_id=current_consumer().consumer_id, appid=request.headers[APPID_HEADER], code=body["code"]
    )
    commit()
    return consumer


@mp.route("/me/refresh-profile", methods=["POST"])
@consumer_required
@mp.response(200, ConsumerSchema)
def refresh_profile() -> Any:
    """Refresh nickname and avatar through the official account's `sns/userinfo`."""
    principal = current_consumer()
    consumer = service.refresh_official_profile(
        consumer_id=principal.consumer_id, merchant_id=principal.merchant_id
    )
    commit()
    return consumer


@mp.route("/logout", methods=["POST"])
@consumer_required
@mp.response(204)
def logout() -> None:
    """Revoke this token."""
    revoke_session(current_consumer().session_id)
    commit()


@h5.route("/oauth/start")
@public
@h5.arguments(OAuthStartSchema, location="query")
@h5.response(302)
def oauth_start(args: dict[str, str]) -> Response:
    """Redirect the follower's browser to WeChat's authorization page."""
    started = start_oauth(appid=args["appid"], scope=args["scope"], next_url=args["next"])
    response = redirect(started.authorize_url, code=302)
    secure = request.is_secure
    response.set_cookie(
        STATE_COOKIE,
        started.cookie,
        max_age=STATE_MAX_AGE_SECONDS,
        httponly=True,
        samesite="Lax",
        secure=secure,
        path="/h5/v1/oauth",
    )
    return response


@h5.route("/oauth/callback")
@public
@h5.arguments(OAuthCallbackSchema, location="query")
@h5.response(302)
def oauth_callback(args: dict[str, str | None]) -> Response:
    """WeChat sends the browser back here; the follower lands on `next` with the token in the fragment."""
    target = finish_oauth(
        cookie=request.cookies.get(STATE_COOKIE),
        state=str(args["state"]),
        code=args.get("code"),
        ip=request.remote_addr,
    )
    commit()
    response = redirect(target, code=302)
    response.delete_cookie(STATE_COOKIE, path="/h5/v1/oauth")
    return response
