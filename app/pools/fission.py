"""Fission (裂变): every grabber gets a signed share link; friends who grab through it unlock the
sharer's ladder tiers (e.g. 3 friends → ¥1, 5 → ¥3), each tier paid once per sharer as a red packet.

The link binds a friend's grab to the sharer the way an invitation binds (first grab wins: a consumer
grabs a pool once, so they count for one sharer at most, and never for themselves). Tier rewards are
paid off the grab's hot path, by a job, from the campaign's budget (reserved like any red packet); a
budget that cannot cover a tier records it as skipped.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, Signer, URLSafeSerializer
from itsdangerous.encoding import base64_encode
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from app.core.db import insert_unless_exists, utcnow
from app.core.money import Money
from app.extensions import db
from app.ledger.service import Overdraft
from app.pools.models import Pool, PoolGrant, PoolShareLink, PoolTierReward

logger = logging.getLogger("hongli.pools")
MAX_TIERS = 5
_SIGNER = "hongli.pool_share_signer"


def _serializer() -> tuple[URLSafeSerializer, Signer]:
    """The share tokens' serializer and its signer, made once per app."""
    made: tuple[URLSafeSerializer, Signer] | None = current_app.extensions.get(_SIGNER)
    if made is None:
        serializer = URLSafeSerializer(current_app.config["SECRET_KEY"], salt="hongli.pool-share")
        made = current_app.extensions[_SIGNER] = (serializer, serializer.make_signer())
    return made


def token_for(pool_id: int, consumer_id: int) -> str:
    """The grabber's share token for this pool (signed; the same every time), in the serializer's format
    — ``[pool_id, consumer_id]`` as compact JSON, base64url, signed under the share salt — made without
    its general path (a JSON encoder, a compression attempt, a signer per call): a fifth of the CPU, on
    every grab's answer. The serializer verifies it (:func:`sharer_of`), as it does tokens it made."""
    _, signer = _serializer()
    return signer.sign(base64_encode(f"[{int(pool_id)},{int(consumer_id)}]")).decode("ascii")


def sharer_of(token: str | None, *, pool_id: int, grabber_id: int) -> int | None:
    """The sharer a grab came through: a valid token of this pool, of someone who grabbed it, not oneself.

    A bad or foreign token is ignored (the grab itself is not refused for it)."""
    if not token:
        return None
    try:
        pool, sharer = _serializer()[0].loads(token)
    except (BadSignature, ValueError, TypeError):
        return None
    if pool != pool_id or sharer == grabber_id:
        return None
    grabbed = db.session.scalar(
        select(PoolGrant.id).where(PoolGrant.pool_id == pool_id, PoolGrant.consumer_id == sharer)
    )
    return int(sharer) if grabbed is not None else None


def validated_ladder(ladder: list[dict[str, Any]], problems: dict[str, list[str]]) -> list[dict[str, int]]:
    """Tiers ascending in friends, each with a positive reward; at most MAX_TIERS."""
    tiers: list[dict[str, int]] = []
    last = 0
    for tier in ladder:
        friends, reward = int(tier.get("friends", 0)), int(tier.get("reward_fen", 0))
        if friends <= last or reward < 1:
            problems["ladder"] = ["tiers need ascending friends (≥ 1) and a reward of at least 1 fen"]
            return []
        tiers.append({"friends": friends, "reward_fen": reward})
        last = friends
    if len(tiers) > MAX_TIERS:
        problems["ladder"] = [f"at most {MAX_TIERS} tiers"]
    return tiers


_LINK_UNLESS_EXISTS = insert_unless_exists(
    PoolShareLink.__table__,  # type: ignore[arg-type]
    ("pool_id", "sharer_id", "opens", "grabs", "created_at"),
    key=("pool_id", "sharer_id"),
)


def _ensure_link(pool_id: int, sharer_id: int) -> None:
    db.session.execute(
        _LINK_UNLESS_EXISTS,
        {"pool_id": pool_id, "sharer_id": sharer_id, "opens": 0, "grabs": 0, "created_at": utcnow()},
    )


def count_grab_through(pool_id: int, sharer_id: int) -> None:
    """One more friend grabbed through the sharer's link (the sharer's own row, not the pool's)."""
    _ensure_link(pool_id, sharer_id)
    db.session.execute(
        update(PoolShareLink)
        .where(PoolShareLink.pool_id == pool_id, PoolShareLink.sharer_id == sharer_id)
        .values(grabs=PoolShareLink.grabs + 1)
    )


def record_open(*, pool_id: int, token: str) -> bool:
    """Someone opened a share link of this pool (the funnel's first step); False for a bad token."""
    try:
        pool, sharer = _serializer()[0].loads(token)
    except (BadSignature, ValueError, TypeError):
        return False
    if pool != pool_id:
        return False
    _ensure_link(pool_id, int(sharer))
    db.session.execute(
        update(PoolShareLink)
        .where(PoolShareLink.pool_id == pool_id, PoolShareLink.sharer_id == int(sharer))
        .values(opens=PoolShareLink.opens + 1)
    )
    return True


def after_grab(pool_id: int, sharer_id: int) -> None:
    """A friend's grab committed: pay the sharer's tiers off the hot path (the sweep catches a lost job)."""
    from app.queue.queues import get_queue

    try:
        get_queue().enqueue("jobs.pools.reward_tiers", pool_id, sharer_id)
    except Exception:
        logger.exception("could not enqueue tier rewards of pool %s sharer %s", pool_id, sharer_id)


def reward_tiers(pool_id: int, sharer_id: int) -> list[PoolTierReward]:
    """Pay every tier the sharer reached and was not paid yet (unique per pool, sharer, tier)."""
    from app.red_packets.service import issue_red_packet

    pool = db.session.get(Pool, pool_id)
    if pool is None or not pool.ladder or pool.rule_version_id is None:
        return []
    friends = (
        db.session.scalar(
            select(func.count()).where(PoolGrant.pool_id == pool_id, PoolGrant.via_sharer_id == sharer_id)
        )
        or 0
    )
    paid: list[PoolTierReward] = []
    now = utcnow()
    for number, tier in enumerate(pool.ladder, start=1):
        if friends < tier["friends"]:
            break
        reward = PoolTierReward(
            pool_id=pool_id,
            sharer_id=sharer_id,
            tier=number,
            friends=tier["friends"],
            amount=Money(tier["reward_fen"]),
        )
        try:
            with db.session.begin_nested():
                db.session.add(reward)
                db.session.flush()
        except IntegrityError:
            continue  # paid (or skipped) already
        try:
            with db.session.begin_nested():
                packet = issue_red_packet(
                    merchant_id=pool.merchant_id,
                    campaign_id=pool.campaign_id,
                    rule_version_id=pool.rule_version_id,
                    rule_id=f"pool:{pool.id}:tier",
                    consumer_id=sharer_id,
                    face_value=reward.amount,
                    min_spend=pool.min_spend,
                    valid_from=now,
                    valid_until=now + timedelta(days=pool.valid_days),
                    issuer_rate_bp=pool.issuer_rate_bp,
                    buyer_rate_bp=pool.buyer_rate_bp,
                    max_order=pool.max_order,
                    worst_case_cost=reward.amount + pool.legs_worst_case,
                    idempotency_key=f"pool-tier:{pool.id}:{sharer_id}:{number}",
                )
            reward.red_packet_id = packet.id if packet is not None else None
        except Overdraft:
            reward.skipped_reason = "budget exhausted"
        paid.append(reward)
    db.session.flush()
    return paid


def funnel(pool_id: int) -> list[dict[str, int]]:
    """Per share link: opened, grabbed through, tiers reached (one statement)."""
    reached = (
        select(func.max(PoolTierReward.tier))
        .where(PoolTierReward.pool_id == pool_id, PoolTierReward.sharer_id == PoolShareLink.sharer_id)
        .scalar_subquery()
    )
    rows = db.session.execute(
        select(PoolShareLink.sharer_id, PoolShareLink.opens, PoolShareLink.grabs, reached)
        .where(PoolShareLink.pool_id == pool_id)
        .order_by(PoolShareLink.sharer_id)
    )
    return [
        {"sharer_id": sharer, "opens": opens, "grabs": grabs, "tier": int(tier or 0)}
        for sharer, opens, grabs, tier in rows
    ]
