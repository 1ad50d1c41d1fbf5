"""Shared plumbing of the sandbox-only admin API: house error shape, body parsing, lookups."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request

from wechat.sandbox.mp import MpError
from wechat.sandbox.state import App, User
from wechat.sandbox.v3 import V3Error
from wechat.sandbox.world import World


class AdminError(Exception):
    """An admin API error rendered as ``{"error": {"code", "message", "details"}}``."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}


def install_error_handlers(bp: Blueprint) -> None:
    """Render admin, v3 and OA errors raised by admin views in the house shape (409 for WeChat refusals)."""

    @bp.errorhandler(AdminError)
    def _admin_error(err: AdminError) -> tuple[Response, int]:
        return jsonify(
            {"error": {"code": err.code, "message": err.message, "details": err.details}}
        ), err.status

    @bp.errorhandler(V3Error)
    def _v3_error(err: V3Error) -> tuple[Response, int]:
        return jsonify(
            {"error": {"code": err.code, "message": err.message, "details": err.detail or {}}}
        ), 409

    @bp.errorhandler(MpError)
    def _mp_error(err: MpError) -> tuple[Response, int]:
        return jsonify({"error": {"code": str(err.errcode), "message": err.errmsg, "details": {}}}), 409


def json_body() -> dict[str, Any]:
    """The JSON object body ({} when absent)."""
    data = request.get_json(silent=True)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AdminError(422, "invalid_body", "JSON object expected")
    return data


def run(world: World, action: Callable[[], Any], deliver: bool = True) -> Any:
    """Run ``action`` under the lock, then deliver whatever became due (outside the lock)."""
    with world.lock:
        result = action()
    if deliver:
        world.run_due()
    return result


def by_key(world: World, data: dict[str, Any], key: str, table: dict[tuple[str, str], Any]) -> Any:
    """Find an object by its merchant-scoped key; ``mchid`` (body or query) disambiguates."""
    mchid = data.get("mchid") or request.args.get("mchid")
    matches = [v for (m, k), v in table.items() if k == key and (mchid is None or m == mchid)]
    if not matches:
        raise AdminError(404, "not_found", f"nothing with key {key!r}")
    if len(matches) > 1:
        raise AdminError(422, "ambiguous", "several merchants use this key; pass mchid")
    return matches[0]


def user_of(world: World, uid: str) -> User:
    user = world.state.users.get(uid)
    if user is None:
        raise AdminError(404, "not_found", f"user {uid} not found")
    return user


def app_of(world: World, appid: str | None) -> App:
    app = world.state.apps.get(appid or "")
    if app is None:
        raise AdminError(404, "not_found", f"app {appid} not registered", {"field": "appid"})
    return app
