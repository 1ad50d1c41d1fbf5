"""Linked accounts: consumers joined by a shared device, IP, payer or phone form a group.

Kept incrementally: the engine's Redis step says when a (kind, digest) is new for a consumer; only then
is the link written here and, if others share it, their groups merged (every member of the larger group
ids moves to the smallest id). Each member's ``<group id>:<size>`` is cached in Redis for the hot path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, func, select, tuple_, update

from app.core.db import insert_unless_exists, utcnow
from app.extensions import db
from app.queue.queues import get_redis
from app.risk.counters import key_prefix
from app.risk.models import LinkKind, RiskLink, RiskMember

_links = cast(Table, RiskLink.__table__)
_members = cast(Table, RiskMember.__table__)
_INSERT_LINK = insert_unless_exists(
    _links,
    ("merchant_id", "kind", "digest", "consumer_id", "created_at"),
    key=("merchant_id", "kind", "digest", "consumer_id"),
)
_LINK_COLUMNS = ("merchant_id", "kind", "digest", "consumer_id", "created_at")
_LINK_KEY = ("merchant_id", "kind", "digest", "consumer_id")
_INSERT_LINKS: dict[int, Any] = {}
_INSERT_MEMBER = insert_unless_exists(
    _members, ("merchant_id", "consumer_id", "group_id", "updated_at"), key=("merchant_id", "consumer_id")
)
GROUP_TTL = 40 * 86400


def member_key(merchant_id: int, consumer_id: int) -> str:
    """The consumer's group id (absent: a group of one)."""
    return f"{key_prefix(merchant_id)}:grp:{consumer_id}"


def size_prefix(merchant_id: int) -> str:
    """``<prefix><group id>`` holds ``<group id>:<size>``."""
    return f"{key_prefix(merchant_id)}:gsize:"


def link_all(*, merchant_id: int, consumer_id: int, pairs: list[tuple[LinkKind, str]]) -> None:
    """Record that ``consumer_id`` was seen with each (kind, digest) of ``pairs``; merge the groups they
    join. Two statements whatever their number when nobody else has any of them (the common case)."""
    if not pairs:
        return
    now = utcnow()
    for kind, digest in insert_links(merchant_id=merchant_id, consumer_id=consumer_id, pairs=pairs, now=now):
        merge(merchant_id, consumer_id, kind, digest, now)


def insert_links(
    *, merchant_id: int, consumer_id: int, pairs: list[tuple[LinkKind, str]], now: datetime
) -> list[tuple[LinkKind, str]]:
    """Insert the links of ``pairs`` (those already there are kept); the pairs another consumer has too
    (their groups are to be merged: :func:`merge`)."""
    if not pairs:
        return []
    params: dict[str, object] = {}
    for i, (kind, digest) in enumerate(pairs):
        params |= {
            f"merchant_id_{i}": merchant_id,
            f"kind_{i}": kind,
            f"digest_{i}": digest,
            f"consumer_id_{i}": consumer_id,
            f"created_at_{i}": now,
        }
    statement = _INSERT_LINKS.get(len(pairs))
    if statement is None:
        statement = _INSERT_LINKS[len(pairs)] = insert_unless_exists(
            _links, _LINK_COLUMNS, key=_LINK_KEY, rows=len(pairs)
        )
    db.session.execute(statement, params if len(pairs) > 1 else {k[:-2]: v for k, v in params.items()})
    # Digests are keyed by kind (the HMAC input starts with it): one digest never means two kinds.
    # (kind, digest) in full: the unique index's leading columns, so each pair is one index lookup (the
    # digest alone would scan every link of the merchant).
    shared = set(
        db.session.execute(
            select(RiskLink.kind, RiskLink.digest)
            .where(
                RiskLink.merchant_id == merchant_id,
                tuple_(RiskLink.kind, RiskLink.digest).in_(pairs),
                RiskLink.consumer_id != consumer_id,
            )
            .distinct()
        ).tuples()
    )
    return [(kind, digest) for kind, digest in pairs if (kind, digest) in shared]


def link(*, merchant_id: int, consumer_id: int, kind: LinkKind, digest: str) -> int:
    """Record that ``consumer_id`` was seen with ``digest``; merge the groups it joins. The group id."""
    now = utcnow()
    db.session.execute(
        _INSERT_LINK,
        {
            "merchant_id": merchant_id,
            "kind": kind,
            "digest": digest,
            "consumer_id": consumer_id,
            "created_at": now,
        },
    )
    return merge(merchant_id, consumer_id, kind, digest, now)


def held_by_others(merchant_id: int, consumer_id: int, kind: LinkKind, digest: str) -> bool:
    """Whether another consumer's link to (kind, digest) is in the database (committed)."""
    return (
        db.session.scalar(
            select(RiskLink.id)
            .where(
                RiskLink.merchant_id == merchant_id,
                RiskLink.kind == kind,
                RiskLink.digest == digest,
                RiskLink.consumer_id != consumer_id,
            )
            .limit(1)
        )
        is not None
    )


def merge(merchant_id: int, consumer_id: int, kind: LinkKind, digest: str, now: datetime) -> int:
    """Join ``consumer_id``'s group with those of everyone else seen with ``digest``: the members of the
    groups merged move to the smallest id; Redis caches the moved members' group id and the group's size."""
    others = db.session.execute(
        select(RiskLink.consumer_id, RiskMember.group_id)
        .outerjoin(
            RiskMember,
            and_(
                RiskMember.merchant_id == RiskLink.merchant_id, RiskMember.consumer_id == RiskLink.consumer_id
            ),
        )
        .where(
            RiskLink.merchant_id == merchant_id,
            RiskLink.kind == kind,
            RiskLink.digest == digest,
            RiskLink.consumer_id != consumer_id,
        )
    ).all()
    if not others:
        return consumer_id  # nobody else has it: nothing to merge (the consumer's own group is unchanged)
    mine = db.session.scalar(
        select(RiskMember.group_id).where(
            RiskMember.merchant_id == merchant_id, RiskMember.consumer_id == consumer_id
        )
    )
    alone = [c for c, g in others if g is None] + ([consumer_id] if mine is None else [])
    groups = {c if g is None else g for c, g in others} | {consumer_id if mine is None else mine}
    target = min(groups)
    for member in alone:
        db.session.execute(
            _INSERT_MEMBER,
            {"merchant_id": merchant_id, "consumer_id": member, "group_id": target, "updated_at": now},
        )
    moved = list(alone)
    merged = groups - {target} - set(alone)
    if merged:
        moved += db.session.scalars(
            update(RiskMember)
            .where(RiskMember.merchant_id == merchant_id, RiskMember.group_id.in_(merged))
            .values(group_id=target, updated_at=now)
            .returning(RiskMember.consumer_id)
            .execution_options(synchronize_session=False)
        ).all()
    size = db.session.scalar(
        select(func.count(RiskMember.id)).where(
            RiskMember.merchant_id == merchant_id, RiskMember.group_id == target
        )
    )
    pipe = get_redis().pipeline(transaction=False)
    for member in moved:
        pipe.set(member_key(merchant_id, member), str(target), ex=GROUP_TTL)
    pipe.set(f"{size_prefix(merchant_id)}{target}", f"{target}:{size}", ex=GROUP_TTL)
    pipe.execute()
    return target


def group_of(*, merchant_id: int, consumer_id: int) -> tuple[int, list[int]]:
    """A consumer's group id and its members (a consumer never linked is a group of one)."""
    group_id = db.session.scalar(
        select(RiskMember.group_id).where(
            RiskMember.merchant_id == merchant_id, RiskMember.consumer_id == consumer_id
        )
    )
    if group_id is None:
        return consumer_id, [consumer_id]
    members = db.session.scalars(
        select(RiskMember.consumer_id)
        .where(RiskMember.merchant_id == merchant_id, RiskMember.group_id == group_id)
        .order_by(RiskMember.consumer_id)
    ).all()
    return group_id, list(members)


def links_of(*, merchant_id: int, consumer_ids: list[int]) -> list[RiskLink]:
    return list(
        db.session.scalars(
            select(RiskLink)
            .where(RiskLink.merchant_id == merchant_id, RiskLink.consumer_id.in_(consumer_ids))
            .order_by(RiskLink.consumer_id, RiskLink.kind)
        )
    )


def largest_groups(*, merchant_id: int, limit: int = 50) -> list[tuple[int, int]]:
    """(group id, size) of the merchant's groups of two or more, largest first."""
    size = func.count(RiskMember.id)
    return [
        (int(g), int(n))
        for g, n in db.session.execute(
            select(RiskMember.group_id, size)
            .where(RiskMember.merchant_id == merchant_id)
            .group_by(RiskMember.group_id)
            .having(size > 1)
            .order_by(size.desc(), RiskMember.group_id)
            .limit(limit)
        )
    ]


def refresh_group_cache(batch: int = 5000) -> int:
    """Write every group's member ids and size to Redis again from the database (the record): after a
    Redis loss, or a merge whose transaction rolled back after it cached. The members cached."""
    sizes: dict[tuple[int, int], int] = {
        (int(m), int(g)): int(n)
        for m, g, n in db.session.execute(
            select(RiskMember.merchant_id, RiskMember.group_id, func.count(RiskMember.id)).group_by(
                RiskMember.merchant_id, RiskMember.group_id
            )
        )
    }
    written = 0
    pipe = get_redis().pipeline(transaction=False)
    for merchant_id, consumer_id, group_id in db.session.execute(
        select(RiskMember.merchant_id, RiskMember.consumer_id, RiskMember.group_id).order_by(RiskMember.id)
    ):
        pipe.set(member_key(merchant_id, consumer_id), str(group_id), ex=GROUP_TTL)
        written += 1
        if written % batch == 0:
            pipe.execute()
    for (merchant_id, group_id), size in sizes.items():
        pipe.set(f"{size_prefix(merchant_id)}{group_id}", f"{group_id}:{size}", ex=GROUP_TTL)
    pipe.execute()
    return written
