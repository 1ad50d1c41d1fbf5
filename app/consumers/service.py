"""Consumer logins (mini-program jscode2session, official-account web OAuth) and profile data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.consumers.models import AppKind, Consumer, ConsumerStatus, WeChatIdentity
from app.consumers.sessions import issue_session
from app.core.db import utcnow
from app.core.errors import InvalidInput, NotFound, Unauthenticated
from app.core.ratelimit import hit
from app.extensions import db
from app.gateway.clients import mini_program_client, official_account_client
from app.gateway.errors import login_error
from app.gateway.tokens import with_access_token
from app.merchants.credentials import get_sealer
from app.merchants.models import Merchant
from app.merchants.service import active_merchant_for_appid
from app.settings import Settings
from wechat.errors import WeChatError
from wechat.miniprogram import decrypt_user_data


@dataclass(frozen=True)
class LoginResult:
    token: str
    expires_in: int
    consumer: Consumer


def _settings() -> Settings:
    settings: Settings = current_app.extensions["hongli.settings"]
    return settings


def _limit_login(ip: str | None) -> None:
    hit(
        f"login:ip:{ip or '-'}",
        limit=_settings().security.login_attempts_per_ip_per_minute,
        window_seconds=60,
    )


def _session_key_context(identity_id: int) -> str:
    return f"identity:{identity_id}:session_key"


def _oauth_context(identity_id: int) -> str:
    return f"identity:{identity_id}:oauth"


def _identity_for(
    *, merchant: Merchant, kind: AppKind, appid: str, openid: str, unionid: str | None, now: datetime
) -> WeChatIdentity:
    """The identity for (appid, openid), creating it (and its consumer) once, even under races."""
    identity = db.session.scalar(
        select(WeChatIdentity).where(WeChatIdentity.appid == appid, WeChatIdentity.openid == openid)
    )
    if identity is not None:
        return identity
    consumer = None
    if unionid:
        consumer = db.session.scalar(
            select(Consumer).where(Consumer.merchant_id == merchant.id, Consumer.unionid == unionid)
        )
    try:
        with db.session.begin_nested():
            if consumer is None:
                consumer = Consumer(merchant_id=merchant.id, unionid=unionid, created_at=now)
                db.session.add(consumer)
                db.session.flush()
            identity = WeChatIdentity(
                merchant_id=merchant.id,
                consumer_id=consumer.id,
                app_kind=kind,
                appid=appid,
                openid=openid,
                created_at=now,
                last_login_at=now,
            )
            db.session.add(identity)
    except IntegrityError:
        # Another login of the same person won the race: use what it created.
        identity = db.session.scalar(
            select(WeChatIdentity).where(WeChatIdentity.appid == appid, WeChatIdentity.openid == openid)
        )
        if identity is None:
            existing = db.session.scalar(
                select(Consumer).where(Consumer.merchant_id == merchant.id, Consumer.unionid == unionid)
            )
            if existing is None:
                raise
            return _identity_for(
                merchant=merchant, kind=kind, appid=appid, openid=openid, unionid=unionid, now=now
            )
    return identity


def _login(identity: WeChatIdentity) -> LoginResult:
    consumer = db.session.get(Consumer, identity.consumer_id)
    assert consumer is not None
    if consumer.status is not ConsumerStatus.ACTIVE:
        raise Unauthenticated("this account cannot sign in", details={"reason": "banned"})
    token, record = issue_session(consumer)
    return LoginResult(token, int((record.expires_at - record.created_at).total_seconds()), consumer)


def login_miniprogram(*, appid: str, code: str, ip: str | None) -> LoginResult:
    """Exchange a ``wx.login`` code for a Hongli token; the first login creates the consumer."""
    _limit_login(ip)
    merchant = active_merchant_for_appid(appid)
    if merchant.mp_appid != appid:
        raise NotFound("unknown mini-program appid", details={"field": "appid"})
    try:
        wx_session = mini_program_client(merchant).code_to_session(code)
    except WeChatError as exc:
        raise login_error(exc) from None
    hit(
        f"login:openid:{wx_session.openid}",
        limit=_settings().security.login_attempts_per_account_per_minute,
        window_seconds=60,
    )
    now = utcnow()
    identity = _identity_for(
        merchant=merchant,
        kind=AppKind.MINIPROGRAM,
        appid=appid,
        openid=wx_session.openid,
        unionid=wx_session.unionid,
        now=now,
    )
    identity.sealed_session_key = get_sealer().seal_text(
        wx_session.session_key, context=_session_key_context(identity.id)
    )
    identity.last_login_at = now
    _link_unionid(identity, wx_session.unionid)
    return _login(identity)


def identity_for_follower(*, merchant: Merchant, openid: str, unionid: str | None) -> WeChatIdentity:
    """The official-account identity of a follower: joined to the consumer who has ``unionid`` (the
    mini-program's, when they signed in there first), else a new consumer; created once, even under races."""
    assert merchant.oa_appid is not None
    identity = _identity_for(
        merchant=merchant,
        kind=AppKind.OFFICIAL_ACCOUNT,
        appid=merchant.oa_appid,
        openid=openid,
        unionid=unionid,
        now=utcnow(),
    )
    _link_unionid(identity, unionid)
    return identity


def _link_unionid(identity: WeChatIdentity, unionid: str | None) -> None:
    consumer = db.session.get(Consumer, identity.consumer_id)
    if consumer is not None and unionid and consumer.unionid is None:
        consumer.unionid = unionid


def _identity_of(*, consumer_id: int, appid: str) -> WeChatIdentity:
    identity = db.session.scalar(
        select(WeChatIdentity).where(WeChatIdentity.consumer_id == consumer_id, WeChatIdentity.appid == appid)
    )
    if identity is None:
        raise NotFound("no WeChat identity for this app")
    return identity


def decrypt_for_consumer(*, consumer_id: int, appid: str, encrypted_data: str, iv: str) -> dict[str, object]:
    """Open mini-program ``encryptedData`` with this consumer's session key (watermark appid checked)."""
    identity = _identity_of(consumer_id=consumer_id, appid=appid)
    if identity.sealed_session_key is None:
        raise InvalidInput("log in through the mini-program first")
    session_key = get_sealer().open_text(
        identity.sealed_session_key, context=_session_key_context(identity.id)
    )
    try:
        return decrypt_user_data(session_key, encrypted_data, iv, appid)
    except WeChatError:
        # Stale session key (WeChat rotated it at a newer wx.login) or data for another app.
        raise InvalidInput(
            "encryptedData does not open with this session; call wx.login and log in again",
            details={"fields": {"encrypted_data": ["does not decrypt for this session"]}},
        ) from None


def update_profile(*, consumer_id: int, appid: str, encrypted_data: str, iv: str) -> Consumer:
    data = decrypt_for_consumer(consumer_id=consumer_id, appid=appid, encrypted_data=encrypted_data, iv=iv)
    consumer = db.session.get(Consumer, consumer_id)
    assert consumer is not None
    if isinstance(data.get("nickName"), str):
        consumer.nickname = str(data["nickName"])[:64]
    if isinstance(data.get("avatarUrl"), str):
        consumer.avatar_url = str(data["avatarUrl"])[:512]
    if isinstance(data.get("unionId"), str) and consumer.unionid is None:
        consumer.unionid = str(data["unionId"])
    return consumer


def update_phone(*, consumer_id: int, appid: str, encrypted_data: str, iv: str) -> Consumer:
    data = decrypt_for_consumer(consumer_id=consumer_id, appid=appid, encrypted_data=encrypted_data, iv=iv)
    phone = data.get("purePhoneNumber") or data.get("phoneNumber")
    if not isinstance(phone, str) or not phone:
        raise InvalidInput("encryptedData carries no phone number")
    consumer = db.session.get(Consumer, consumer_id)
    assert consumer is not None
    consumer.phone = phone[:32]
    return consumer


def phone_from_code(*, consumer_id: int, appid: str, code: str) -> Consumer:
    """Store the phone number behind a ``getPhoneNumber`` button's ``code`` (the current flow: the code
    goes to WeChat's ``getuserphonenumber``; no session key is involved, unlike the legacy encryptedData)."""
    identity = _identity_of(consumer_id=consumer_id, appid=appid)
    merchant = db.session.get(Merchant, identity.merchant_id)
    assert merchant is not None
    client = mini_program_client(merchant)
    try:
        number = with_access_token(merchant, "mp", lambda token: client.phone_number(token, code))
    except WeChatError as exc:
        if exc.code in ("40029", "40163", "APPID_MISMATCH"):
            raise InvalidInput(
                "this phone number code is not valid (used, expired or for another app); ask again",
                details={"fields": {"code": ["not a valid getPhoneNumber code"]}},
            ) from None
        raise login_error(exc) from None
    consumer = db.session.get(Consumer, consumer_id)
    assert consumer is not None
    consumer.phone = number.phone[:32]
    return consumer


def get_consumer(*, merchant_id: int, consumer_id: int) -> Consumer:
    consumer = db.session.get(Consumer, consumer_id)
    if consumer is None or consumer.merchant_id != merchant_id:
        raise NotFound("no such consumer")
    return consumer


# ---------------------------------------------------------------- official-account web OAuth


def login_official_account(*, appid: str, code: str, ip: str | None) -> LoginResult:
    """Finish web OAuth: exchange the code, fetch userinfo when granted, log the follower in."""
    _limit_login(ip)
    merchant = active_merchant_for_appid(appid)
    if merchant.oa_appid != appid:
        raise NotFound("unknown official-account appid", details={"field": "appid"})
    client = official_account_client(merchant)
    try:
        token = client.exchange_code(code)
        if token.is_snapshotuser:
            # A "snapshot page" visitor is not a real follower and must stay anonymous (§2.2).
            raise InvalidInput("open this page in WeChat to sign in", details={"reason": "snapshot_user"})
        granted_userinfo = "snsapi_userinfo" in token.scope
        profile = client.userinfo(token.access_token, token.openid) if granted_userinfo else {}
    except WeChatError as exc:
        raise login_error(exc) from None
    unionid = token.unionid or (profile.get("unionid") if isinstance(profile.get("unionid"), str) else None)
    now = utcnow()
    identity = _identity_for(
        merchant=merchant,
        kind=AppKind.OFFICIAL_ACCOUNT,
        appid=appid,
        openid=token.openid,
        unionid=unionid,
        now=now,
    )
    identity.sealed_oauth = get_sealer().seal_text(
        json.dumps(
            {"access_token": token.access_token, "refresh_token": token.refresh_token, "scope": token.scope}
        ),
        context=_oauth_context(identity.id),
    )
    identity.last_login_at = now
    _link_unionid(identity, unionid)
    consumer = db.session.get(Consumer, identity.consumer_id)
    assert consumer is not None
    _apply_userinfo(consumer, profile)
    return _login(identity)


def _apply_userinfo(consumer: Consumer, profile: dict[str, object]) -> None:
    if isinstance(profile.get("nickname"), str):
        consumer.nickname = str(profile["nickname"])[:64]
    if isinstance(profile.get("headimgurl"), str):
        consumer.avatar_url = str(profile["headimgurl"])[:512]


def refresh_official_profile(*, consumer_id: int, merchant_id: int) -> Consumer:
    """Refresh the stored OAuth token and re-read ``sns/userinfo`` (needs an earlier userinfo grant)."""
    merchant = db.session.get(Merchant, merchant_id)
    assert merchant is not None and merchant.oa_appid
    identity = _identity_of(consumer_id=consumer_id, appid=merchant.oa_appid)
    if identity.sealed_oauth is None:
        raise InvalidInput("sign in through the official account first")
    sealer = get_sealer()
    stored = json.loads(sealer.open_text(identity.sealed_oauth, context=_oauth_context(identity.id)))
    if "snsapi_userinfo" not in str(stored.get("scope")):
        raise InvalidInput("the follower granted only snsapi_base; ask for snsapi_userinfo")
    client = official_account_client(merchant)
    try:
        token = client.refresh_oauth_token(stored["refresh_token"])
        profile = client.userinfo(token.access_token, token.openid)
    except WeChatError as exc:
        raise login_error(exc) from None
    identity.sealed_oauth = sealer.seal_text(
        json.dumps(
            {"access_token": token.access_token, "refresh_token": token.refresh_token, "scope": token.scope}
        ),
        context=_oauth_context(identity.id),
    )
    consumer = db.session.get(Consumer, consumer_id)
    assert consumer is not None
    _apply_userinfo(consumer, profile)
    return consumer


def reseal_identity_secrets() -> int:
    """Re-encrypt every stored session key / OAuth token under the current master key."""
    sealer = get_sealer()
    count = 0
    # No guard needed: re-sealing the same plaintext twice is harmless; the lock only avoids double work.
    for identity in db.session.scalars(select(WeChatIdentity).order_by(WeChatIdentity.id).with_for_update()):
        if identity.sealed_session_key and not sealer.is_current(identity.sealed_session_key):
            identity.sealed_session_key = sealer.reseal(
                identity.sealed_session_key, context=_session_key_context(identity.id)
            )
            count += 1
        if identity.sealed_oauth and not sealer.is_current(identity.sealed_oauth):
            identity.sealed_oauth = sealer.reseal(identity.sealed_oauth, context=_oauth_context(identity.id))
            count += 1
    return count
