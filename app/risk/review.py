"""The review queue: rewards held by the engine, approved (released to settlement), rejected (reversed
in the ledger, exactly) or banned (rejected and the consumer — optionally the linked group — banned).

Each resolution is one ``UPDATE risk_holds … WHERE status = 'held'`` (exactly one concurrent reviewer
wins; the others get 409), its money moves in the same transaction, and it is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select

from app.audit.service import Actor, record_audit
from app.console.service import ban_consumer
from app.consumers.models import Consumer, ConsumerStatus
from app.core.db import insert_unless_exists, utcnow
from app.core.errors import ConcurrentChange, Conflict, NotFound
from app.core.guards import guarded_update
from app.core.money import Money
from app.extensions import db
from app.ledger.accounts import campaign_accounts, consumer_accounts
from app.ledger.models import EntryReason
from app.ledger.service import post_entry
from app.rebates.models import GrantStatus, RebateGrant
from app.red_packets.models import RedPacket, RedPacketStatus
from app.red_packets.service import release_reservation
from app.risk.links import group_of
from app.risk.models import HoldStatus, RiskDecision, RiskHold

MERCHANT_SIDE = frozenset({"issuer_merchant", "red_packet_discount", "coupon_discount"})


def hold_order(
    *, merchant_id: int, consumer_id: int, order_id: int, decision_id: int | None, reasons: list[str]
) -> None:
    """Hold what ``order_id`` booked for consumers (in the booking's transaction); an order already held
    stays held by its first decision (the unique (merchant, order) decides, on any engine)."""
    db.session.execute(
        _INSERT_HOLD,
        {
            "merchant_id": merchant_id,
            "consumer_id": consumer_id,
            "order_id": order_id,
            "decision_id": decision_id,
            "reasons": list(reasons),
            "status": HoldStatus.HELD,
            "reversed_fen": 0,
            "created_at": utcnow(),
        },
    )


_INSERT_HOLD = insert_unless_exists(
    cast(Table, RiskHold.__table__),
    (
        "merchant_id",
        "consumer_id",
        "order_id",
        "decision_id",
        "reasons",
        "status",
        "reversed_fen",
        "created_at",
    ),
    key=("merchant_id", "order_id"),
)


def list_holds(
    *,
    merchant_id: int,
    status: HoldStatus | None = HoldStatus.HELD,
    limit: int = 100,
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    """Holds, newest first, with their reasons and what they hold."""
    query = select(RiskHold).where(RiskHold.merchant_id == merchant_id)
    if status is not None:
        query = query.where(RiskHold.status == status)
    if before_id is not None:
        query = query.where(RiskHold.id < before_id)
    holds = db.session.scalars(query.order_by(RiskHold.id.desc()).limit(limit)).all()
    held = _held_amounts([h.order_id for h in holds])
    return [_summary(hold, held.get(hold.order_id, 0)) for hold in holds]


def get_hold(*, merchant_id: int, hold_id: int) -> dict[str, Any]:
    hold = _hold(merchant_id, hold_id)
    return _summary(hold, _held_amounts([hold.order_id]).get(hold.order_id, 0))


def _summary(hold: RiskHold, held_fen: int) -> dict[str, Any]:
    return {
        "id": hold.id,
        "consumer_id": hold.consumer_id,
        "order_id": hold.order_id,
        "decision_id": hold.decision_id,
        "reasons": hold.reasons,
        "status": hold.status.value,
        "held_fen": held_fen,
        "reversed_fen": hold.reversed_fen,
        "resolution": hold.resolution,
        "resolved_by_staff_id": hold.resolved_by_staff_id,
        "created_at": hold.created_at,
        "resolved_at": hold.resolved_at,
    }


def _held_amounts(order_ids: list[int]) -> dict[int, int]:
    if not order_ids:
        return {}
    totals: dict[int, int] = {}
    for order_id, amount, reversed_ in db.session.execute(
        select(RebateGrant.order_id, RebateGrant.amount, RebateGrant.reversed).where(
            RebateGrant.order_id.in_(order_ids),
            RebateGrant.consumer_id.is_not(None),
            RebateGrant.beneficiary.not_in(MERCHANT_SIDE),
        )
    ):
        totals[order_id] = totals.get(order_id, 0) + (amount - reversed_).fen
    return totals


def _hold(merchant_id: int, hold_id: int) -> RiskHold:
    hold = db.session.get(RiskHold, hold_id)
    if hold is None or hold.merchant_id != merchant_id:
        raise NotFound("no such hold", details={"hold_id": hold_id})
    return hold


def _resolve(hold: RiskHold, target: HoldStatus, staff_id: int | None, resolution: str | None) -> None:
    if hold.status is not HoldStatus.HELD:
        raise Conflict(f"this hold is already {hold.status.value}", details={"status": hold.status.value})
    now = utcnow()
    if not guarded_update(
        RiskHold,
        hold.id,
        RiskHold.status == HoldStatus.HELD,
        status=target,
        resolved_by_staff_id=staff_id,
        resolution=resolution,
        resolved_at=now,
    ):
        db.session.refresh(hold)
        raise Conflict(f"this hold is already {hold.status.value}", details={"status": hold.status.value})


@dataclass(frozen=True)
class Reviewer:
    actor: Actor
    staff_id: int | None


def approve(*, merchant_id: int, hold_id: int, reviewer: Reviewer, note: str | None = None) -> dict[str, Any]:
    """Release a held reward: its grants settle like any other (after the after-sales window)."""
    hold = _hold(merchant_id, hold_id)
    _resolve(hold, HoldStatus.APPROVED, reviewer.staff_id, note)
    _audit(hold, "risk_hold.approve", reviewer, {"note": note})
    return get_hold(merchant_id=merchant_id, hold_id=hold_id)


def reject(*, merchant_id: int, hold_id: int, reviewer: Reviewer, reason: str) -> dict[str, Any]:
    """Refuse a held reward: every consumer grant of the order reversed to its campaign's budget, and the
    red packets the order earned revoked (their reservations released) unless already spent."""
    hold = _hold(merchant_id, hold_id)
    _resolve(hold, HoldStatus.REJECTED, reviewer.staff_id, reason)
    reversed_fen = _reverse(hold)
    revoked = _revoke_packets(hold)
    guarded_update(RiskHold, hold.id, reversed_fen=reversed_fen)
    _audit(
        hold,
        "risk_hold.reject",
        reviewer,
        {"reason": reason, "reversed_fen": reversed_fen, "packets_revoked": revoked},
    )
    return get_hold(merchant_id=merchant_id, hold_id=hold_id)


def ban(
    *, merchant_id: int, hold_id: int, reviewer: Reviewer, reason: str, group: bool = False
) -> dict[str, Any]:
    """Reject the hold and ban its consumer (with ``group``, every consumer of their linked group)."""
    hold = _hold(merchant_id, hold_id)
    result = reject(merchant_id=merchant_id, hold_id=hold_id, reviewer=reviewer, reason=reason)
    targets = [hold.consumer_id]
    if group:
        _, targets = group_of(merchant_id=merchant_id, consumer_id=hold.consumer_id)
    banned = []
    for consumer_id in targets:
        consumer = db.session.get(Consumer, consumer_id)
        if consumer is None or consumer.status is ConsumerStatus.BANNED:
            continue
        ban_consumer(
            merchant_id=merchant_id, consumer_id=consumer_id, reason=reason[:255], actor=reviewer.actor
        )
        banned.append(consumer_id)
    result["banned_consumer_ids"] = banned
    return result


def _reverse(hold: RiskHold) -> int:
    total = 0
    grants = db.session.scalars(
        select(RebateGrant)
        .where(
            RebateGrant.order_id == hold.order_id,
            RebateGrant.status == GrantStatus.PENDING,
            RebateGrant.consumer_id.is_not(None),
        )
        .order_by(RebateGrant.id)
    ).all()
    for grant in grants:
        if grant.beneficiary in MERCHANT_SIDE or grant.consumer_id is None:
            continue
        delta = grant.amount - grant.reversed
        if delta.fen <= 0:
            continue
        # The guard: still pending and as read (a refund clawing the same grant back meanwhile makes this
        # transaction fail; the reviewer asks again on the new figures).
        if not guarded_update(
            RebateGrant,
            grant.id,
            RebateGrant.status == GrantStatus.PENDING,
            RebateGrant.reversed == grant.reversed,
            reversed=grant.amount,
        ):
            raise ConcurrentChange(f"rebate grant {grant.id} changed during the review")
        wallet = consumer_accounts(grant.merchant_id, grant.consumer_id)
        post_entry(
            key=f"clawback:{grant.id}:risk:{hold.id}",
            reason=EntryReason.CLAWBACK,
            cause_type="risk_hold",
            cause_id=str(hold.id),
            lines=[
                (wallet.pending, -delta),
                (campaign_accounts(grant.merchant_id, grant.campaign_id).budget, delta),
            ],
            merchant_id=grant.merchant_id,
            rule_version_id=grant.rule_version_id,
            memo=f"reversed: rejected in risk review (hold {hold.id})",
        )
        total += delta.fen
    return total


def _revoke_packets(hold: RiskHold) -> int:
    revoked = 0
    for packet_id in db.session.scalars(
        select(RedPacket.id).where(
            RedPacket.merchant_id == hold.merchant_id,
            RedPacket.source_order_id == hold.order_id,
            RedPacket.status == RedPacketStatus.ISSUED,
        )
    ).all():
        if not guarded_update(
            RedPacket, packet_id, RedPacket.status == RedPacketStatus.ISSUED, status=RedPacketStatus.REVOKED
        ):
            continue
        packet = db.session.scalars(
            select(RedPacket).where(RedPacket.id == packet_id).execution_options(populate_existing=True)
        ).one()
        release_reservation(
            packet, packet.reserved, reason=EntryReason.RELEASE, key=f"rp-risk-revoke:{packet.id}"
        )
        revoked += 1
    return revoked


def _audit(hold: RiskHold, action: str, reviewer: Reviewer, after: dict[str, Any]) -> None:
    record_audit(
        actor=reviewer.actor,
        action=action,
        target_type="risk_hold",
        target_id=hold.id,
        merchant_id=hold.merchant_id,
        before={"status": HoldStatus.HELD.value},
        after={"status": hold.status.value, "order_id": hold.order_id, **after},
    )


def bulk(
    *, merchant_id: int, hold_ids: list[int], action: str, reviewer: Reviewer, reason: str | None, group: bool
) -> dict[str, Any]:
    """Apply one action to many holds, each in its own savepoint: a hold already resolved is reported,
    the others proceed."""
    done: list[int] = []
    refused: dict[str, str] = {}
    for hold_id in hold_ids:
        try:
            with db.session.begin_nested():
                if action == "approve":
                    approve(merchant_id=merchant_id, hold_id=hold_id, reviewer=reviewer, note=reason)
                elif action == "reject":
                    reject(merchant_id=merchant_id, hold_id=hold_id, reviewer=reviewer, reason=reason or "")
                else:
                    ban(
                        merchant_id=merchant_id,
                        hold_id=hold_id,
                        reviewer=reviewer,
                        reason=reason or "",
                        group=group,
                    )
            done.append(hold_id)
        except (Conflict, NotFound, ConcurrentChange) as exc:
            refused[str(hold_id)] = exc.code
    return {"done": done, "refused": refused}


def decisions(
    *, merchant_id: int, consumer_id: int | None = None, limit: int = 100, since: datetime | None = None
) -> list[RiskDecision]:
    query = select(RiskDecision).where(RiskDecision.merchant_id == merchant_id)
    if consumer_id is not None:
        query = query.where(RiskDecision.consumer_id == consumer_id)
    if since is not None:
        query = query.where(RiskDecision.created_at >= since)
    return list(db.session.scalars(query.order_by(RiskDecision.id.desc()).limit(limit)))


def money_held(order_id: int) -> Money:
    return Money(_held_amounts([order_id]).get(order_id, 0))
