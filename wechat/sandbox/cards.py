"""Card-pack coupons (微信卡券) and official-account event pushes (protocol doc §7b)."""

from __future__ import annotations

from typing import Any

from wechat.sandbox.identity import openid_for
from wechat.sandbox.mp import MpError
from wechat.sandbox.state import App, Card, CardCode, User, move
from wechat.sandbox.world import World

CARD_TYPES = ("GROUPON", "CASH", "DISCOUNT", "GIFT", "GENERAL_COUPON", "MEMBER_CARD", "GENERAL_CARD")


def push_event(world: World, app: App, user: User, event: str, extra: dict[str, str | int]) -> None:
    """Queue an event XML for the app's server URL (plain or safe mode)."""
    fields: dict[str, str | int] = {
        "ToUserName": app.original_id,
        "FromUserName": openid_for(world, user, app.appid),
        "CreateTime": int(world.clock.now()),
        "MsgType": "event",
        "Event": event,
        **extra,
    }
    world.notifier.oa_event(app, fields)


def create_card(world: World, appid: str, body: dict[str, Any]) -> Card:
    """card/create: validate the minimal schema and return an approved card (review is instant here)."""
    card = body.get("card") or {}
    card_type = card.get("card_type")
    if card_type not in CARD_TYPES:
        raise MpError(40071, "invalid card type")
    base = (card.get(str(card_type).lower()) or {}).get("base_info") or {}
    if not base.get("title"):
        raise MpError(47001, "data format error: base_info.title")
    quantity = (base.get("sku") or {}).get("quantity")
    if not isinstance(quantity, int) or quantity < 0:
        raise MpError(40122, "invalid quantity")
    date_info = base.get("date_info") or {}
    now = int(world.clock.now())
    begin = int(date_info.get("begin_timestamp", now))
    end = int(date_info.get("end_timestamp", now + 365 * 86400))
    if date_info.get("type") == "DATE_TYPE_FIX_TERM":
        end = now + 86400 * int(date_info.get("fixed_term", 30))
    if end <= begin:
        raise MpError(40079, "invalid time")
    new = Card(
        "p" + world.rng.alnum(27),
        appid,
        str(card_type),
        str(base["title"]),
        quantity,
        bool(base.get("use_custom_code", False)),
        begin,
        end,
    )
    world.state.cards[new.card_id] = new
    return new


def receive_card(
    world: World, app: App, user: User, card: Card, code: str | None, outer_str: str = ""
) -> CardCode:
    """The user takes a card: pick a deposited code (custom-code cards) or mint one; emits user_get_card."""
    if card.quantity <= 0:
        raise MpError(45031, "stock is empty")
    if code is None:
        code = card.deposited.pop(0) if card.use_custom_code and card.deposited else world.rng.digits(12)
    if code in world.state.card_codes:
        raise MpError(40116, "invalid code: already issued")
    card.quantity -= 1
    issued = CardCode(
        code, card.card_id, openid_for(world, user, app.appid), world.rng.alnum(32) + "=", outer_str
    )
    world.state.card_codes[code] = issued
    push_event(
        world,
        app,
        user,
        "user_get_card",
        {
            "CardId": card.card_id,
            "IsGiveByFriend": 0,
            "UserCardCode": code,
            "FriendUserName": "",
            "OuterId": 0,
            "OldUserCardCode": "",
            "OuterStr": outer_str,
            "IsRestoreMemberCard": 0,
            "IsRecommendByFriend": 0,
            "UnionId": user.unionid,
        },
    )
    return issued


def code_status(world: World, issued: CardCode) -> str:
    card = world.state.cards[issued.card_id]
    if issued.status == "NORMAL" and world.clock.now() > card.end_time:
        move("card_code", issued, "EXPIRE")
    return issued.status


def consume_code(world: World, issued: CardCode, source: str) -> None:
    """NORMAL → CONSUMED and emit user_consume_card (§7b)."""
    status = code_status(world, issued)
    if status == "CONSUMED":
        raise MpError(40099, "invalid code, this code has consumed")
    if status != "NORMAL":
        raise MpError(40127, "invalid user-card status")
    move("card_code", issued, "CONSUMED")
    card = world.state.cards[issued.card_id]
    app = world.state.apps[card.appid]
    user = world.state.user_by_openid(card.appid, issued.openid)
    if user is not None:
        push_event(
            world,
            app,
            user,
            "user_consume_card",
            {
                "CardId": card.card_id,
                "UserCardCode": issued.code,
                "ConsumeSource": source,
                "LocationName": "",
                "StaffOpenId": "",
                "VerifyCode": "",
                "RemarkAmount": "",
                "OuterStr": issued.outer_str,
            },
        )


def delete_code(world: World, issued: CardCode) -> None:
    """The user deletes the card from the card pack: emits user_del_card."""
    if issued.status != "NORMAL":
        raise MpError(40127, "invalid user-card status")
    move("card_code", issued, "DELETE")
    card = world.state.cards[issued.card_id]
    user = world.state.user_by_openid(card.appid, issued.openid)
    if user is not None:
        push_event(
            world,
            world.state.apps[card.appid],
            user,
            "user_del_card",
            {"CardId": card.card_id, "UserCardCode": issued.code},
        )
