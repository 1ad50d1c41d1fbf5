"""The official account as WeChat runs it for a follower: parametric QR codes (``qrcode/create``), the
user's follow state (``user/info``), and what a follower does — follow (by a QR code or not), scan a code
while following, unfollow, send a text — pushed to the account's server URL (plain, compatible or safe)."""

from __future__ import annotations

from typing import Any

from wechat.sandbox.identity import openid_for
from wechat.sandbox.mp import MpError
from wechat.sandbox.state import App, QrTicket, SentMessage, User
from wechat.sandbox.world import World

TEMPORARY_MAX_S = 30 * 86400  # a temporary code lives at most 30 days
TEMPORARY_DEFAULT_S = 60
PERMANENT_SCENE_IDS = 100_000
ACTIONS = ("QR_SCENE", "QR_STR_SCENE", "QR_LIMIT_SCENE", "QR_LIMIT_STR_SCENE")


def create_qrcode(world: World, appid: str, body: dict[str, Any]) -> dict[str, Any]:
    """``cgi-bin/qrcode/create``: a ticket for a temporary or permanent code carrying a scene."""
    action = body.get("action_name")
    if action not in ACTIONS:
        raise MpError(40097, "invalid action_name")
    scene = ((body.get("action_info") or {}).get("scene")) or {}
    permanent = action.startswith("QR_LIMIT")
    if action.endswith("STR_SCENE"):
        value = scene.get("scene_str")
        if not isinstance(value, str) or not 1 <= len(value) <= 64:
            raise MpError(40097, "invalid scene_str")
        text = value
    else:
        number = scene.get("scene_id")
        limit = PERMANENT_SCENE_IDS if permanent else 2**32 - 1
        if not isinstance(number, int) or not 1 <= number <= limit:
            raise MpError(40097, "invalid scene_id")
        text = str(number)
    expires_at: float | None = None
    answer: dict[str, Any] = {}
    if not permanent:
        expire = body.get("expire_seconds", TEMPORARY_DEFAULT_S)
        if not isinstance(expire, int) or not 60 <= expire <= TEMPORARY_MAX_S:
            raise MpError(40097, "invalid expire_seconds")
        expires_at = world.clock.now() + expire
        answer["expire_seconds"] = expire
    ticket = "gQ" + world.rng.alnum(62)
    world.state.qr_tickets[ticket] = QrTicket(ticket, appid, text, permanent, expires_at)
    return {"ticket": ticket, **answer, "url": f"http://weixin.qq.com/q/{ticket[2:24]}"}


def user_info(world: World, app: App, openid: str) -> dict[str, Any]:
    """``cgi-bin/user/info``: ``subscribe`` 0 for a user who does not follow (only openid then)."""
    user = world.state.user_by_openid(app.appid, openid)
    if user is None:
        raise MpError(40003, "invalid openid")
    since = world.state.follows.get((app.appid, user.id))
    if since is None:
        return {"subscribe": 0, "openid": openid}
    info: dict[str, Any] = {
        "subscribe": 1,
        "openid": openid,
        "language": "zh_CN",
        "subscribe_time": int(since),
        "remark": "",
        "groupid": 0,
        "tagid_list": [],
        "subscribe_scene": "ADD_SCENE_QR_CODE",
    }
    if app.unionid_bound:
        info["unionid"] = user.unionid
    return info


def _scanned(world: World, app: App, ticket: str | None) -> QrTicket | None:
    if not ticket:
        return None
    qr = world.state.qr_tickets.get(ticket)
    if qr is None or qr.appid != app.appid:
        raise MpError(40097, "unknown ticket")
    if qr.expires_at is not None and world.clock.now() > qr.expires_at:
        raise MpError(40097, "expired ticket")
    return qr


def _push(world: World, app: App, user: User, fields: dict[str, str | int]) -> None:
    world.notifier.oa_event(
        app,
        {
            "ToUserName": app.original_id,
            "FromUserName": openid_for(world, user, app.appid),
            "CreateTime": int(world.clock.now()),
            **fields,
        },
    )


def follow(world: World, app: App, user: User, ticket: str | None = None, event_key: str = "") -> str:
    """The user follows (by scanning ``ticket``'s code, or not): ``subscribe``, ``qrscene_``-prefixed key."""
    qr = _scanned(world, app, ticket)
    world.state.follows[(app.appid, user.id)] = world.clock.now()
    fields: dict[str, str | int] = {"MsgType": "event", "Event": "subscribe"}
    if qr is not None:
        fields |= {"EventKey": f"qrscene_{qr.scene}", "Ticket": qr.ticket}
    elif event_key:
        fields["EventKey"] = event_key
    _push(world, app, user, fields)
    return openid_for(world, user, app.appid)


def scan(world: World, app: App, user: User, ticket: str) -> None:
    """A follower scans a code: ``SCAN`` with the bare scene; a non-follower scanning follows."""
    qr = _scanned(world, app, ticket)
    assert qr is not None
    if (app.appid, user.id) not in world.state.follows:
        follow(world, app, user, ticket)
        return
    _push(world, app, user, {"MsgType": "event", "Event": "SCAN", "EventKey": qr.scene, "Ticket": qr.ticket})


def unfollow(world: World, app: App, user: User) -> None:
    world.state.follows.pop((app.appid, user.id), None)
    _push(world, app, user, {"MsgType": "event", "Event": "unsubscribe", "EventKey": ""})


def text(world: World, app: App, user: User, content: str) -> str:
    msg_id = world.rng.digits(19)
    _push(world, app, user, {"MsgType": "text", "Content": content, "MsgId": int(msg_id)})
    return msg_id


def subscribe_consent(
    world: World, app: App, user: User, template_ids: list[str], accept: bool
) -> dict[str, str]:
    """The user answers ``wx.requestSubscribeMessage``: each accepted template gets one more consent.
    Returns what the mini-program receives (template id → "accept" / "reject")."""
    answers: dict[str, str] = {}
    for template_id in template_ids:
        key = (app.appid, user.id, template_id)
        if accept:
            world.state.subscribe_consents[key] = world.state.subscribe_consents.get(key, 0) + 1
        answers[template_id] = "accept" if accept else "reject"
    return answers


def send_subscribe(world: World, appid: str, body: dict[str, Any]) -> dict[str, Any]:
    """``message/subscribe/send``: spends one consent of the user for the template (43101 without one)."""
    user = world.state.user_by_openid(appid, str(body.get("touser", "")))
    if user is None:
        raise MpError(40003, "invalid openid")
    template_id = str(body.get("template_id", ""))
    data = body.get("data")
    if not template_id or not isinstance(data, dict) or not data:
        raise MpError(47003, "argument invalid! data.thing1.value is empty")
    key = (appid, user.id, template_id)
    if world.state.subscribe_consents.get(key, 0) <= 0:
        raise MpError(43101, "user refuse to accept the msg")
    world.state.subscribe_consents[key] -= 1
    msgid = world.rng.digits(18)
    world.state.sent_messages.append(
        SentMessage(
            msgid,
            "subscribe",
            appid,
            user.id,
            template_id,
            data,
            str(body.get("page", "")),
            world.clock.now(),
        )
    )
    return {"errcode": 0, "errmsg": "ok", "msgid": int(msgid)}


def send_template(world: World, appid: str, body: dict[str, Any]) -> dict[str, Any]:
    """``message/template/send``: only to a follower of the account (43004 otherwise)."""
    user = world.state.user_by_openid(appid, str(body.get("touser", "")))
    if user is None:
        raise MpError(40003, "invalid openid")
    if (appid, user.id) not in world.state.follows:
        raise MpError(43004, "require subscribe")
    template_id = str(body.get("template_id", ""))
    data = body.get("data")
    if not template_id or not isinstance(data, dict):
        raise MpError(40037, "invalid template_id")
    msgid = world.rng.digits(18)
    world.state.sent_messages.append(
        SentMessage(
            msgid, "template", appid, user.id, template_id, data, str(body.get("url", "")), world.clock.now()
        )
    )
    return {"errcode": 0, "errmsg": "ok", "msgid": int(msgid)}
