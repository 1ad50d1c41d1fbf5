"""Card-pack HTTP surface under ``/card/…?access_token=`` (protocol doc §7b)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from wechat.sandbox.cards import code_status, consume_code, create_card
from wechat.sandbox.mp import MpError, check_access_token, mp_endpoint
from wechat.sandbox.state import CardCode
from wechat.sandbox.world import World

bp = Blueprint("sandbox_card", __name__)


def _body() -> dict[str, Any]:
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise MpError(47001, "data format error")
    return body


def _code(world: World, appid: str, body: dict[str, Any]) -> CardCode:
    issued = world.state.card_codes.get(str(body.get("code", "")))
    if issued is None or world.state.cards[issued.card_id].appid != appid:
        raise MpError(40116, "invalid code")
    if body.get("card_id") and body["card_id"] != issued.card_id:
        raise MpError(40116, "invalid code for card_id")
    return issued


@bp.post("/card/create")
@mp_endpoint("mp.card")
def card_create(world: World) -> dict[str, Any]:
    tok = check_access_token(world, request.args.get("access_token"))
    card = create_card(world, tok.appid, _body())
    return {"errcode": 0, "errmsg": "ok", "card_id": card.card_id}


@bp.post("/card/code/deposit")
@mp_endpoint("mp.card")
def code_deposit(world: World) -> dict[str, Any]:
    """Import custom codes (≤ 100 per call)."""
    tok = check_access_token(world, request.args.get("access_token"))
    body = _body()
    card = world.state.cards.get(str(body.get("card_id", "")))
    if card is None or card.appid != tok.appid:
        raise MpError(40073, "invalid card id")
    codes = body.get("code") or []
    if not isinstance(codes, list) or len(codes) > 100:
        raise MpError(40109, "code count exceeds the limit of 100")
    succ, dup = [], []
    for code in map(str, codes):
        if code in card.deposited or code in world.state.card_codes:
            dup.append(code)
        else:
            card.deposited.append(code)
            succ.append(code)
    return {"errcode": 0, "errmsg": "ok", "succ_code": succ, "duplicate_code": dup, "fail_code": []}


@bp.post("/card/code/getdepositcount")
@mp_endpoint("mp.card")
def deposit_count(world: World) -> dict[str, Any]:
    tok = check_access_token(world, request.args.get("access_token"))
    card = world.state.cards.get(str(_body().get("card_id", "")))
    if card is None or card.appid != tok.appid:
        raise MpError(40073, "invalid card id")
    return {"errcode": 0, "errmsg": "ok", "count": len(card.deposited)}


@bp.post("/card/modifystock")
@mp_endpoint("mp.card")
def modify_stock(world: World) -> dict[str, Any]:
    tok = check_access_token(world, request.args.get("access_token"))
    body = _body()
    card = world.state.cards.get(str(body.get("card_id", "")))
    if card is None or card.appid != tok.appid:
        raise MpError(40073, "invalid card id")
    new = card.quantity + int(body.get("increase_stock_value", 0)) - int(body.get("reduce_stock_value", 0))
    if new < 0:
        raise MpError(40122, "invalid quantity")
    card.quantity = new
    return {"errcode": 0, "errmsg": "ok"}


@bp.post("/card/code/get")
@mp_endpoint("mp.card")
def code_get(world: World) -> dict[str, Any]:
    """Query a code; with ``check_consume`` abnormal codes are errors (40099 / 40127)."""
    tok = check_access_token(world, request.args.get("access_token"))
    body = _body()
    issued = _code(world, tok.appid, body)
    status = code_status(world, issued)
    if body.get("check_consume", True) and status != "NORMAL":
        if status == "CONSUMED":
            raise MpError(40099, "invalid code, this code has consumed")
        raise MpError(40127, "invalid user-card status")
    card = world.state.cards[issued.card_id]
    return {
        "errcode": 0,
        "errmsg": "ok",
        "card": {"card_id": card.card_id, "begin_time": card.begin_time, "end_time": card.end_time},
        "openid": issued.openid,
        "can_consume": status == "NORMAL",
        "user_card_status": status,
        "outer_str": issued.outer_str,
    }


@bp.post("/card/code/consume")
@mp_endpoint("mp.card")
def code_consume(world: World) -> dict[str, Any]:
    """Redeem a code; emits ``user_consume_card`` with ConsumeSource FROM_API."""
    tok = check_access_token(world, request.args.get("access_token"))
    issued = _code(world, tok.appid, _body())
    consume_code(world, issued, "FROM_API")
    return {"errcode": 0, "errmsg": "ok", "card": {"card_id": issued.card_id}, "openid": issued.openid}


@bp.post("/card/code/decrypt")
@mp_endpoint("mp.card")
def code_decrypt(world: World) -> dict[str, Any]:
    """Resolve the encrypted code a page received from ``wx.addCard`` / card URLs."""
    tok = check_access_token(world, request.args.get("access_token"))
    enc = str(_body().get("encrypt_code", ""))
    for issued in world.state.card_codes.values():
        if issued.encrypt_code == enc and world.state.cards[issued.card_id].appid == tok.appid:
            return {"errcode": 0, "errmsg": "ok", "code": issued.code}
    raise MpError(40075, "invalid encrypt code")


@bp.post("/card/qrcode/create")
@mp_endpoint("mp.card")
def qrcode_create(world: World) -> dict[str, Any]:
    """A receive-card QR code (``QR_CARD``); response keys follow wechatpy's docs (UNVERIFIED, §7b)."""
    tok = check_access_token(world, request.args.get("access_token"))
    body = _body()
    card_info = ((body.get("action_info") or {}).get("card")) or {}
    card = world.state.cards.get(str(card_info.get("card_id", "")))
    if body.get("action_name") != "QR_CARD" or card is None or card.appid != tok.appid:
        raise MpError(40073, "invalid card id")
    expire = int(body.get("expire_seconds", 365 * 86400))
    if not 60 <= expire <= 365 * 86400:
        raise MpError(40096, "invalid expire_seconds")
    ticket = world.rng.alnum(64)
    return {
        "errcode": 0,
        "errmsg": "ok",
        "ticket": ticket,
        "expire_seconds": expire,
        "url": f"http://weixin.qq.com/q/{ticket[:22]}",
        "show_qrcode_url": f"https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket={ticket}",
    }
