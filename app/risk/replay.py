"""The dry run: the last N days of recorded decisions (what each claim, order and withdrawal looked like)
and the behaviour events between them replayed, in time order, through a candidate policy with in-memory
counters. Nothing is written. The counts are the merchant's false-positive estimate before enabling it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from app.behaviour.models import BehaviourEvent, BehaviourKind
from app.core.db import utcnow
from app.extensions import db
from app.risk.clients import Client
from app.risk.counters import MemoryStore
from app.risk.engine import Context, Subject, decide
from app.risk.links import member_key, size_prefix
from app.risk.models import Action, Outcome, RiskDecision, RiskMember
from app.risk.policy import Policy

MAX_DECISIONS = 50_000


def dry_run(*, merchant_id: int, policy: Policy, days: int) -> dict[str, Any]:
    """How the last ``days`` days would have gone under ``policy``, beside what really happened."""
    since = utcnow() - timedelta(days=days)
    store = MemoryStore()
    groups: dict[int, list[int]] = {}
    for consumer_id, group_id in db.session.execute(
        select(RiskMember.consumer_id, RiskMember.group_id).where(RiskMember.merchant_id == merchant_id)
    ):
        groups.setdefault(group_id, []).append(consumer_id)
    for group_id, members in groups.items():
        store.strings[f"{size_prefix(merchant_id)}{group_id}"] = f"{group_id}:{len(members)}"
        for consumer_id in members:
            store.strings[member_key(merchant_id, consumer_id)] = str(group_id)
    events = db.session.execute(
        select(BehaviourEvent.consumer_id, BehaviourEvent.occurred_at)
        .where(
            BehaviourEvent.merchant_id == merchant_id,
            BehaviourEvent.occurred_at >= since - timedelta(days=1),
            BehaviourEvent.kind.in_([BehaviourKind.VIEW, BehaviourKind.CART]),
        )
        .order_by(BehaviourEvent.occurred_at)
    ).all()
    recorded = db.session.scalars(
        select(RiskDecision)
        .where(RiskDecision.merchant_id == merchant_id, RiskDecision.created_at >= since)
        .order_by(RiskDecision.created_at, RiskDecision.id)
        .limit(MAX_DECISIONS)
    ).all()
    from app.risk.counters import key_prefix

    prefix = key_prefix(merchant_id)
    counts = {outcome.value: 0 for outcome in Outcome}
    before = {outcome.value: 0 for outcome in Outcome}
    changed = 0
    reasons: dict[str, int] = {}
    e = 0
    for row in recorded:
        while e < len(events) and events[e][1] <= row.created_at:
            consumer_id, at = events[e]
            ms = int(at.timestamp() * 1000)
            store.sorted.setdefault(f"{prefix}:trail:{consumer_id}", {})[f"{ms}:{e}"] = ms
            e += 1
        related = tuple(int(x) for x in (row.facts or {}).get("related", []))
        decision = decide(
            row.action,
            Subject(merchant_id, row.consumer_id),
            Context(
                kind=row.kind,
                reference=row.reference,
                client=Client(ip=row.ip, device_hash=row.device),
                related=related,
                claims=int((row.facts or {}).get("claims", 0)),
                at=row.created_at,
            ),
            policy=policy,
            store=store,
        )
        counts[decision.outcome.value] += 1
        before[row.outcome.value] += 1
        changed += decision.outcome is not row.outcome
        for reason in decision.reasons:
            reasons[reason] = reasons.get(reason, 0) + 1
    rewards = [r for r in recorded if r.action is not Action.WITHDRAW]
    return {
        "days": days,
        "decisions": len(recorded),
        "rewards": len(rewards),
        "would_be": counts,
        "was": before,
        "changed": changed,
        "reasons": reasons,
    }
