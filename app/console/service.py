"""Staff actions on consumers and on the merchant's own policy, always within one merchant."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.audit.service import Actor, record_audit
from app.consumers.models import Consumer, ConsumerStatus
from app.consumers.sessions import revoke_all_sessions
from app.core.errors import NotFound
from app.core.money import Money
from app.extensions import db
from app.merchants.models import Merchant
from app.merchants.service import merchant_summary, update_merchant

# The payout fields a PATCH may leave out: they keep their current values (see update_merchant_policy).
_PAYOUT_FIELDS = (
    "rail",
    "withdrawal_min_fen",
    "withdrawal_fee_bp",
    "withdrawal_daily_limit_fen",
    "withdrawal_auto_approve_max_fen",
)


def _consumer_snapshot(consumer: Consumer) -> dict[str, Any]:
    return {"status": consumer.status.value, "banned_reason": consumer.banned_reason}


def _locked_consumer(merchant_id: int, consumer_id: int) -> Consumer:
    # No guard needed: a ban and an unban are last-writer-wins settings, each audited; no money moves.
    consumer = db.session.scalar(
        select(Consumer)
        .where(Consumer.id == consumer_id, Consumer.merchant_id == merchant_id)
        .with_for_update()
    )
    if consumer is None:
        # Another merchant's consumer is indistinguishable from no consumer at all.
        raise NotFound("no such consumer")
    return consumer


def ban_consumer(*, merchant_id: int, consumer_id: int, reason: str, actor: Actor) -> Consumer:
    """Ban a consumer of the merchant and end all their sessions (banning twice updates the reason)."""
    consumer = _locked_consumer(merchant_id, consumer_id)
    before = _consumer_snapshot(consumer)
    consumer.status = ConsumerStatus.BANNED
    consumer.banned_reason = reason
    revoked = revoke_all_sessions(consumer.id)
    record_audit(
        actor=actor,
        action="consumer.ban",
        target_type="consumer",
        target_id=consumer.id,
        merchant_id=merchant_id,
        before=before,
        after=_consumer_snapshot(consumer) | {"sessions_revoked": revoked},
    )
    return consumer


def unban_consumer(*, merchant_id: int, consumer_id: int, actor: Actor) -> Consumer:
    """Let a banned consumer of the merchant log in again (their old sessions stay revoked)."""
    consumer = _locked_consumer(merchant_id, consumer_id)
    before = _consumer_snapshot(consumer)
    consumer.status = ConsumerStatus.ACTIVE
    consumer.banned_reason = None
    record_audit(
        actor=actor,
        action="consumer.unban",
        target_type="consumer",
        target_id=consumer.id,
        merchant_id=merchant_id,
        before=before,
        after=_consumer_snapshot(consumer),
    )
    return consumer


def merchant_profile(*, merchant_id: int) -> dict[str, Any]:
    """The merchant as staff may see it: identifiers, policy, and secrets only as configured flags."""
    return merchant_summary(db.session.get_one(Merchant, merchant_id))


def update_merchant_policy(*, merchant_id: int, changes: dict[str, Any], actor: Actor) -> dict[str, Any]:
    """Change payout and settlement policy only; the merchants service validates and audits.

    ``changes`` holds ``payouts`` and/or ``settlement`` (money as Money). Payout fields left out keep
    their current values, since the onboarding schema would otherwise reset them to defaults.
    """
    merchant = db.session.get_one(Merchant, merchant_id)
    current = merchant_summary(merchant)
    if not changes:
        return current
    document: dict[str, Any] = {}
    if "payouts" in changes:
        payouts = {key: current[key] for key in _PAYOUT_FIELDS if key != "rail"} | {
            "rail": current["payout_rail"]
        }
        for key, value in changes["payouts"].items():
            payouts[key] = value.fen if isinstance(value, Money) else value
        document["payouts"] = payouts
    if "settlement" in changes:
        document["settlement"] = {"after_sales_window_days": current["after_sales_window_days"]} | changes[
            "settlement"
        ]
    update_merchant(merchant=merchant, document=document, actor=actor)
    return merchant_summary(merchant)
