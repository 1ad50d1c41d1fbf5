"""Consumer bearer tokens: issued at login, bound to one merchant, expiring, revocable."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app, has_request_context, request
from sqlalchemy import select, update

from app.auth.principals import ConsumerPrincipal
from app.auth.tokens import new_token, token_digest
from app.consumers.models import Consumer, ConsumerSession, ConsumerStatus
from app.core.db import utcnow
from app.core.errors import Unauthenticated
from app.extensions import db
from app.merchants.models import Merchant, MerchantStatus

TOKEN_PREFIX = "hc"  # noqa: S105 - a token prefix, not a secret


def issue_session(consumer: Consumer, now: datetime | None = None) -> tuple[str, ConsumerSession]:
    """A new token for ``consumer`` (returned once; only its digest is stored)."""
    now = now or utcnow()
    ttl = current_app.extensions["hongli.settings"].security.consumer_token_ttl_seconds
    token, digest = new_token(TOKEN_PREFIX)
    record = ConsumerSession(
        merchant_id=consumer.merchant_id,
        consumer_id=consumer.id,
        token_digest=digest,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl),
        ip=request.remote_addr if has_request_context() else None,
    )
    db.session.add(record)
    db.session.flush()
    return token, record


def authenticate_consumer(*, token: str, appid: str, now: datetime | None = None) -> ConsumerPrincipal:
    """The consumer behind ``token``, if the token is live, the consumer active, and ``appid`` theirs."""
    now = now or utcnow()
    row = db.session.execute(
        select(ConsumerSession, Consumer, Merchant)
        .join(Consumer, Consumer.id == ConsumerSession.consumer_id)
        .join(Merchant, Merchant.id == ConsumerSession.merchant_id)
        .where(ConsumerSession.token_digest == token_digest(token))
    ).one_or_none()
    if row is None:
        raise Unauthenticated("unknown or expired token")
    record, consumer, merchant = row
    if record.revoked_at is not None or record.expires_at <= now:
        raise Unauthenticated("unknown or expired token")
    if appid not in (merchant.mp_appid, merchant.oa_appid):
        # A token is bound to one merchant: presenting it to another merchant's app gets nothing.
        raise Unauthenticated("this token does not belong to this app")
    if consumer.status is not ConsumerStatus.ACTIVE or merchant.status is not MerchantStatus.ACTIVE:
        raise Unauthenticated("this account cannot sign in")
    return ConsumerPrincipal(
        merchant_id=merchant.id, consumer_id=consumer.id, session_id=record.id, appid=appid
    )


def revoke_session(session_id: int, now: datetime | None = None) -> None:
    db.session.execute(
        update(ConsumerSession)
        .where(ConsumerSession.id == session_id, ConsumerSession.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
    )


def revoke_all_sessions(consumer_id: int, now: datetime | None = None) -> int:
    result = db.session.execute(
        update(ConsumerSession)
        .where(ConsumerSession.consumer_id == consumer_id, ConsumerSession.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
