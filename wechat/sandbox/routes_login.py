"""Login, tokens and web OAuth (protocol doc §1–§2, §7b.1 tickets)."""

from __future__ import annotations

import base64
import html
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, redirect, request
from werkzeug.wrappers import Response

from wechat.sandbox.identity import issue_oauth_code, openid_for
from wechat.sandbox.mp import MpError, app_by_credentials, check_access_token, mp_endpoint
from wechat.sandbox.state import AccessToken, OAuthToken
from wechat.sandbox.world import World, current_world

bp = Blueprint("sandbox_login", __name__)


@bp.get("/sns/jscode2session")
@mp_endpoint("mp.jscode2session")
def jscode2session(world: World) -> dict[str, Any]:
    """code2Session (§1.1): single-use codes, 40163 on reuse, 40029 unknown/expired/other app."""
    args = request.args
    app = app_by_credentials(world, args.get("appid"), args.get("secret"))
    if args.get("grant_type") != "authorization_code":
        raise MpError(40002, "invalid grant_type")
    code = world.state.login_codes.get(args.get("js_code", ""))
    if code is None or code.appid != app.appid or code.expires_at <= world.clock.now():
        raise MpError(40029, "invalid code")
    if code.used:
        raise MpError(40163, "code been used")
    code.used = True
    user = world.state.users[code.user_id]
    session_key = base64.b64encode(world.rng.bytes(16)).decode()
    world.state.session_keys[(user.id, app.appid)] = session_key
    out = {"openid": openid_for(world, user, app.appid), "session_key": session_key}
    if app.unionid_bound:
        out["unionid"] = user.unionid
    return out


@bp.get("/cgi-bin/token")
@mp_endpoint("mp.token")
def token(world: World) -> dict[str, Any]:
    """Global access_token (§1.3): every call issues a new one; older ones live on for the overlap."""
    args = request.args
    if args.get("grant_type") != "client_credential":
        raise MpError(40002, "invalid grant_type")
    app = app_by_credentials(world, args.get("appid"), args.get("secret"))
    now = world.clock.now()
    for old in world.state.access_tokens.values():
        if old.appid == app.appid and not old.stable:
            old.expires_at = min(old.expires_at, now + world.config.token_overlap_s)
    tok = AccessToken(world.rng.alnum(120), app.appid, now + world.config.token_ttl_s)
    world.state.access_tokens[tok.token] = tok
    return {"access_token": tok.token, "expires_in": world.config.token_ttl_s}


@bp.post("/cgi-bin/stable_token")
@mp_endpoint("mp.stable_token")
def stable_token(world: World) -> dict[str, Any]:
    """Stable token (§1.4): same token while valid unless ``force_refresh``; isolated from cgi-bin/token."""
    body = request.get_json(silent=True) or {}
    if body.get("grant_type") != "client_credential":
        raise MpError(40002, "invalid grant_type")
    app = app_by_credentials(world, body.get("appid"), body.get("secret"))
    now = world.clock.now()
    current = next(
        (
            t
            for t in world.state.access_tokens.values()
            if t.appid == app.appid and t.stable and t.expires_at > now
        ),
        None,
    )
    if current is not None and not body.get("force_refresh"):
        return {"access_token": current.token, "expires_in": int(current.expires_at - now)}
    if current is not None:
        current.expires_at = now
    tok = AccessToken(world.rng.alnum(120), app.appid, now + world.config.token_ttl_s, stable=True)
    world.state.access_tokens[tok.token] = tok
    return {"access_token": tok.token, "expires_in": world.config.token_ttl_s}


@bp.get("/cgi-bin/ticket/getticket")
@mp_endpoint("mp.getticket")
def getticket(world: World) -> dict[str, Any]:
    """JS-SDK tickets ``type=jsapi|wx_card`` (§7b.1), cached per token type for 7200 s."""
    tok = check_access_token(world, request.args.get("access_token"))
    kind = request.args.get("type", "jsapi")
    if kind not in ("jsapi", "wx_card"):
        raise MpError(40097, "invalid args")
    now = world.clock.now()
    cached = world.state.tickets.get((tok.appid, kind))
    if cached is None or cached[1] <= now:
        cached = (world.rng.alnum(86), now + 7200)
        world.state.tickets[(tok.appid, kind)] = cached
    return {"errcode": 0, "errmsg": "ok", "ticket": cached[0], "expires_in": int(cached[1] - now)}


# ------------------------------------------------------------------ web OAuth (§2)


@bp.get("/connect/oauth2/authorize")
def authorize() -> Response:
    """Consent: redirect to ``redirect_uri?code&state`` for ``sandbox_user`` (or the only user).

    ``action=deny`` redirects with only ``state`` (snsapi_userinfo refusal, §2.1).
    """
    world = current_world()
    args = request.args
    appid, redirect_uri = args.get("appid", ""), args.get("redirect_uri", "")
    scope, state = args.get("scope", "snsapi_base"), args.get("state", "")
    with world.lock:
        app = world.state.apps.get(appid)
        if app is None or not redirect_uri or args.get("response_type") != "code":
            return Response("invalid appid / redirect_uri / response_type", status=400)
        if scope not in ("snsapi_base", "snsapi_userinfo"):
            return Response("invalid scope", status=400)
        sep = "&" if "?" in redirect_uri else "?"
        if args.get("action") == "deny":
            return redirect(f"{redirect_uri}{sep}{urlencode({'state': state})}", code=302)
        user_id = args.get("sandbox_user")
        if user_id is None and len(world.state.users) == 1:
            user_id = next(iter(world.state.users))
        user = world.state.users.get(user_id or "")
        if user is None:
            links = "".join(
                f'<li><a href="{html.escape(request.url)}&amp;sandbox_user={html.escape(u.id)}">'
                f"{html.escape(u.nickname or u.id)}</a></li>"
                for u in world.state.users.values()
            )
            page = f"<h1>WeChat sandbox: who is authorising {html.escape(appid)}?</h1><ul>{links}</ul>"
            return Response(page, status=200, mimetype="text/html")
        code = issue_oauth_code(world, user, appid, scope)
    return redirect(f"{redirect_uri}{sep}{urlencode({'code': code, 'state': state})}", code=302)


def _oauth_payload(world: World, tok: OAuthToken) -> dict[str, Any]:
    user = world.state.users[tok.user_id]
    out: dict[str, Any] = {
        "access_token": tok.access_token,
        "expires_in": int(tok.expires_at - world.clock.now()),
        "refresh_token": tok.refresh_token,
        "openid": openid_for(world, user, tok.appid),
        "scope": tok.scope,
    }
    app = world.state.apps[tok.appid]
    if tok.scope == "snsapi_userinfo" and app.unionid_bound:
        out["unionid"] = user.unionid
    return out


@bp.get("/sns/oauth2/access_token")
@mp_endpoint("mp.oauth_access_token")
def oauth_access_token(world: World) -> dict[str, Any]:
    """Exchange an OAuth code (§2.2)."""
    args = request.args
    app = app_by_credentials(world, args.get("appid"), args.get("secret"))
    if args.get("grant_type") != "authorization_code":
        raise MpError(40002, "invalid grant_type")
    code = world.state.oauth_codes.get(args.get("code", ""))
    if code is None or code.appid != app.appid or code.expires_at <= world.clock.now():
        raise MpError(40029, "invalid code")
    if code.used:
        raise MpError(40163, "code been used")
    code.used = True
    now = world.clock.now()
    tok = OAuthToken(
        world.rng.alnum(80),
        world.rng.alnum(80),
        app.appid,
        code.user_id,
        code.scope,
        now + world.config.token_ttl_s,
        now + 30 * 86400,
    )
    world.state.oauth_tokens[tok.access_token] = tok
    world.state.refresh_tokens[tok.refresh_token] = tok
    return _oauth_payload(world, tok)


@bp.get("/sns/oauth2/refresh_token")
@mp_endpoint("mp.oauth_refresh_token")
def oauth_refresh_token(world: World) -> dict[str, Any]:
    """Refresh (§2.3): new access token if expired, else same token with its expiry extended."""
    args = request.args
    tok = world.state.refresh_tokens.get(args.get("refresh_token", ""))
    if tok is None or tok.appid != args.get("appid"):
        raise MpError(40030, "invalid refresh_token")
    now = world.clock.now()
    if tok.refresh_expires_at <= now:
        raise MpError(42002, "refresh_token expired")
    if tok.expires_at <= now:
        world.state.oauth_tokens.pop(tok.access_token, None)
        tok.access_token = world.rng.alnum(80)
        world.state.oauth_tokens[tok.access_token] = tok
    tok.expires_at = now + world.config.token_ttl_s
    return _oauth_payload(world, tok)


@bp.get("/sns/userinfo")
@mp_endpoint("mp.userinfo")
def userinfo(world: World) -> dict[str, Any]:
    """User profile for a snsapi_userinfo token; 48001 for snsapi_base (§2.4)."""
    tok = world.state.oauth_tokens.get(request.args.get("access_token", ""))
    if tok is None or tok.expires_at <= world.clock.now():
        raise MpError(40001, "invalid credential, access_token is invalid or not latest")
    user = world.state.users[tok.user_id]
    if request.args.get("openid") != openid_for(world, user, tok.appid):
        raise MpError(40003, "invalid openid")
    if tok.scope != "snsapi_userinfo":
        raise MpError(48001, "api unauthorized")
    out: dict[str, Any] = {
        "openid": user.openids[tok.appid],
        "nickname": user.nickname,
        "sex": 0,
        "province": "",
        "city": "",
        "country": "",
        "headimgurl": "",
        "privilege": [],
    }
    if world.state.apps[tok.appid].unionid_bound:
        out["unionid"] = user.unionid
    return out


@bp.get("/sns/auth")
@mp_endpoint("mp.userinfo")
def sns_auth(world: World) -> dict[str, Any]:
    """OAuth token validity check (§2.4)."""
    tok = world.state.oauth_tokens.get(request.args.get("access_token", ""))
    if tok is None or tok.expires_at <= world.clock.now():
        raise MpError(40001, "invalid credential")
    user = world.state.users[tok.user_id]
    if request.args.get("openid") != user.openids.get(tok.appid):
        raise MpError(40003, "invalid openid")
    return {"errcode": 0, "errmsg": "ok"}


@bp.post("/wxa/business/getuserphonenumber")
@mp_endpoint("wxa.phone_number")
def getuserphonenumber(world: World) -> dict[str, Any]:
    """The phone number behind a ``getPhoneNumber`` code (current flow): single use, 5 minutes, this app."""
    tok = check_access_token(world, request.args.get("access_token"))
    body = request.get_json(force=True, silent=True)
    code = world.state.phone_codes.get(str((body or {}).get("code", "")) if isinstance(body, dict) else "")
    if code is None or code.used or code.appid != tok.appid or world.clock.now() > code.expires_at:
        raise MpError(40029, "invalid code")
    code.used = True
    country = "86"
    pure = code.phone
    return {
        "errcode": 0,
        "errmsg": "ok",
        "phone_info": {
            "phoneNumber": pure,
            "purePhoneNumber": pure,
            "countryCode": country,
            "watermark": {"timestamp": int(world.clock.now()), "appid": tok.appid},
        },
    }
