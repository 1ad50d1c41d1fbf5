"""Official-account / mini-program JSON transport: ``{"errcode","errmsg"}`` errors with HTTP 200 (§1–§2)."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any

from flask import Response

from wechat.sandbox.state import AccessToken, App
from wechat.sandbox.v3 import TIMEOUT_HEADER
from wechat.sandbox.world import World, current_world

MpHandler = Callable[..., dict[str, Any]]


class MpError(Exception):
    """``{"errcode": N, "errmsg": "…"}``."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"{errcode} {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


def mp_json(payload: dict[str, Any]) -> Response:
    return Response(
        json.dumps(payload, ensure_ascii=False),
        status=200,
        headers={"Content-Type": "application/json; charset=utf-8"},
    )


def mp_endpoint(api: str) -> Callable[[MpHandler], Callable[..., Response]]:
    """Wrap ``fn(world, **kwargs) -> dict`` with errcode rendering and faults (codes are errcode numbers)."""

    def deco(fn: MpHandler) -> Callable[..., Response]:
        @functools.wraps(fn)
        def view(**kwargs: Any) -> Response:
            world = current_world()
            fault = world.faults.take(api)
            if fault is not None and not fault.commits:
                return _fault(world, fault)
            try:
                with world.lock:
                    resp = mp_json(fn(world, **kwargs))
            except MpError as err:
                resp = mp_json({"errcode": err.errcode, "errmsg": err.errmsg})
            if fault is not None:
                return _fault(world, fault)
            return resp

        return view

    return deco


def _fault(world: World, fault: Any) -> Response:
    if fault.mode == "timeout":
        if world.config.real_sleep:
            time.sleep(fault.delay_s)
        resp = Response(b"", status=504)
        resp.headers[TIMEOUT_HEADER] = "timeout"
        return resp
    if fault.mode == "malformed":
        return Response(b'{"errcode":', status=200, headers={"Content-Type": "application/json"})
    try:
        code = int(fault.code or -1)
    except ValueError:
        code = -1
    return mp_json({"errcode": code, "errmsg": fault.message or "system error"})


def app_by_credentials(world: World, appid: str | None, secret: str | None) -> App:
    """40013 for an unknown appid, 41004 missing secret, 40125 wrong secret (§1.3)."""
    app = world.state.apps.get(appid or "")
    if app is None:
        raise MpError(40013, "invalid appid")
    if not secret:
        raise MpError(41004, "appsecret missing")
    if secret != app.secret:
        raise MpError(40125, "invalid appsecret")
    return app


def check_access_token(world: World, token: str | None) -> AccessToken:
    """40001 unknown token, 42001 expired (wechatpy refreshes and retries once on both, §1.3)."""
    found = world.state.access_tokens.get(token or "")
    if found is None:
        raise MpError(40001, "invalid credential, access_token is invalid or not latest")
    if found.expires_at <= world.clock.now():
        raise MpError(42001, "access_token expired")
    return found
