"""Official-account API surface for followers under ``/cgi-bin/…?access_token=``: parametric QR codes and
user info (the follower actions themselves are admin endpoints: ``/_sandbox/users/<uid>/follow`` …)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from wechat.sandbox import oa
from wechat.sandbox.mp import MpError, check_access_token, mp_endpoint
from wechat.sandbox.world import World

bp = Blueprint("sandbox_oa", __name__)


@bp.post("/cgi-bin/qrcode/create")
@mp_endpoint("mp.qrcode")
def qrcode_create(world: World) -> dict[str, Any]:
    tok = check_access_token(world, request.args.get("access_token"))
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise MpError(47001, "data format error")
    return oa.create_qrcode(world, tok.appid, body)


@bp.get("/cgi-bin/user/info")
@mp_endpoint("mp.user_info")
def user_info(world: World) -> dict[str, Any]:
    tok = check_access_token(world, request.args.get("access_token"))
    app = world.state.apps[tok.appid]
    return oa.user_info(world, app, str(request.args.get("openid", "")))


def _body() -> dict[str, Any]:
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise MpError(47001, "data format error")
    return body


@bp.post("/cgi-bin/message/subscribe/send")
@mp_endpoint("mp.subscribe_send")
def subscribe_send(world: World) -> dict[str, Any]:
    tok = check_access_token(world, request.args.get("access_token"))
    return oa.send_subscribe(world, tok.appid, _body())


@bp.post("/cgi-bin/message/template/send")
@mp_endpoint("mp.template_send")
def template_send(world: World) -> dict[str, Any]:
    tok = check_access_token(world, request.args.get("access_token"))
    return oa.send_template(world, tok.appid, _body())
