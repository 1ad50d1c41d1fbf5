"""Pools: create, open (reserve the whole pool), grab (Redis step, then the grant committed), close.

Money: opening moves the pool's worst case (its total plus every share's two rebate legs at their worst)
from the campaign's budget to its reserve, in one entry caused by the pool. A grab posts nothing: the
share's red packet takes over its part of that reservation (``PoolGrant.reserved`` says how much), so
grabs never update a ledger balance row and never queue behind each other in PostgreSQL. Closing gives
back what no grant took, once. From then on a pool packet is an ordinary red packet (redeemed, or expired
and released by the red-packet sweep).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import redis
from flask import current_app
from sqlalchemy import BigInteger, Table, TextClause, bindparam, func, insert, select, text, type_coerce
from sqlalchemy.exc import IntegrityError

from app.audit.service import Actor, record_audit
from app.campaigns.models import Campaign
from app.consumers.models import Consumer, ConsumerStatus
from app.core.db import utcnow
from app.core.errors import InvalidInput
from app.core.guards import guarded_update
from app.core.money import Money
from app.core.tx import transaction_from_here
from app.extensions import db
from app.followers.models import Follower, FollowStatus
from app.ledger.accounts import campaign_accounts
from app.ledger.models import EntryReason
from app.ledger.service import post_entry
from app.orders.models import Order, OrderStatus
from app.pools import cash, fission, hot
from app.pools.errors import (
    AlreadyGrabbed,
    ConsumerBanned,
    NotEligible,
    PoolBusy,
    PoolClosed,
    PoolEmpty,
    PoolNotFound,
)
from app.pools.models import Audience, Pool, PoolGrant, PoolPayout, PoolShare, PoolStatus, SplitKind
from app.pools.split import split_fixed, split_random
from app.rebates.rules import IssueRedPacket, worst_case_cost
from app.red_packets.models import RedPacket
from app.red_packets.service import granted_packet_row, insert_packet
from app.risk import ClaimPlan, Decision, conclude_claim, plan_request_claim, settle_claim
from app.risk.engine import persist
from app.risk.models import LinkKind
from app.risk.records import claim_links, claim_params, claim_sql, claim_written

logger = logging.getLogger("hongli.pools")
MAX_SHARES = 10_000
# sendgroupredpack (protocol doc §5.3): total_num ≥ 3; the group's average packet 1.00–200.00 yuan.
FISSION_MIN, FISSION_MAX = 3, 20
FISSION_PACKET_MIN_FEN, FISSION_PACKET_MAX_FEN = 100, 20_000
REBUILD_WAITS = 50  # × 20 ms at most, while another process rebuilds a lost pool
# A test-only fault point (off unless a test sets it in the app's config): the web process dies right
# after the Redis step, before the grant's commit, as a crash would leave it.
FAULT_CONFIG_KEY = "HONGLI_TEST_POOL_FAULT"


# ---------------------------------------------------------------- create / open / close


def create_pool(
    *,
    merchant_id: int,
    campaign_id: int,
    name: str,
    split: SplitKind,
    audience: Audience,
    total: Money,
    count: int,
    starts_at: datetime,
    ends_at: datetime,
    min_spend: Money,
    valid_days: int,
    issuer_rate_bp: int = 0,
    buyer_rate_bp: int = 0,
    max_order: Money | None = None,
    ladder: list[dict[str, int]] | None = None,
    payout: PoolPayout = PoolPayout.RED_PACKET,
    fission_count: int | None = None,
    actor: Actor,
    staff_id: int | None = None,
) -> Pool:
    """A draft pool of a campaign of the merchant (nothing reserved until it opens)."""
    campaign = db.session.scalar(
        select(Campaign).where(Campaign.id == campaign_id, Campaign.merchant_id == merchant_id)
    )
    if campaign is None:
        raise InvalidInput("unknown campaign", details={"fields": {"campaign_id": ["unknown"]}})
    problems: dict[str, list[str]] = {}
    if not 1 <= count <= MAX_SHARES:
        problems["count"] = [f"between 1 and {MAX_SHARES}"]
    elif total.fen < count:
        problems["total_fen"] = ["at least 1 fen per share"]
    if ends_at <= starts_at:
        problems["ends_at"] = ["must be after starts_at"]
    if min_spend.fen and split is SplitKind.FIXED and min_spend.fen <= total.fen // count:
        problems["min_spend_fen"] = ["must exceed a share (at least 1 fen is paid)"]
    max_order = max_order if max_order is not None else min_spend
    if payout is not PoolPayout.RED_PACKET and (issuer_rate_bp or buyer_rate_bp):
        problems["payout"] = ["a cash share is not spent at the merchant: no two-way rates"]
    _check_fission(payout, fission_count, split, total, count, problems)
    tiers = fission.validated_ladder(ladder or [], problems)
    if problems:
        raise InvalidInput("invalid pool", details={"fields": problems})
    pool = Pool(
        merchant_id=merchant_id,
        campaign_id=campaign_id,
        name=name,
        split=split,
        audience=audience,
        payout=payout,
        fission_count=fission_count if payout is PoolPayout.FISSION_CASH else None,
        total=total,
        count=count,
        starts_at=starts_at,
        ends_at=ends_at,
        min_spend=min_spend,
        valid_days=valid_days,
        issuer_rate_bp=issuer_rate_bp,
        buyer_rate_bp=buyer_rate_bp,
        max_order=max_order,
        legs_worst_case=worst_case_cost(Money(0), max_order, issuer_rate_bp, buyer_rate_bp),
        ladder=tiers,
        status=PoolStatus.DRAFT,
        reserved=Money(0),
        released=Money(0),
        created_by_staff_id=staff_id,
    )
    db.session.add(pool)
    db.session.flush()
    record_audit(
        actor=actor,
        action="pool.create",
        target_type="pool",
        target_id=pool.id,
        merchant_id=merchant_id,
        after={"total_fen": total.fen, "count": count, "split": split.value},
    )
    return pool


def get_pool(*, merchant_id: int, pool_id: int) -> Pool:
    """The merchant's pool; another merchant's pool is not found."""
    pool = db.session.scalar(select(Pool).where(Pool.id == pool_id, Pool.merchant_id == merchant_id))
    if pool is None:
        raise PoolNotFound("no such pool")
    return pool


def list_pools(*, merchant_id: int) -> list[Pool]:
    return list(db.session.scalars(select(Pool).where(Pool.merchant_id == merchant_id).order_by(Pool.id)))


def open_pool(*, merchant_id: int, pool_id: int, actor: Actor) -> Pool:
    """Split the pool into its shares and reserve its whole worst case from the campaign budget.

    The guard is ``UPDATE … WHERE status = 'draft'``; a budget that cannot cover the pool refuses it
    (409 ``insufficient_funds``) and nothing is opened.
    """
    pool = get_pool(merchant_id=merchant_id, pool_id=pool_id)
    campaign = db.session.get(Campaign, pool.campaign_id)
    assert campaign is not None
    if campaign.current_version_id is None:
        raise PoolClosed("the campaign has no rules version", details={"status": pool.status.value})
    if utcnow() >= pool.ends_at:
        raise PoolClosed("the pool's window has passed", details={"ends_at": pool.ends_at.isoformat()})
    reserved = pool.total + Money(pool.legs_worst_case.fen * pool.count)
    if not guarded_update(
        Pool,
        pool.id,
        Pool.status == PoolStatus.DRAFT,
        status=PoolStatus.OPEN,
        opened_at=utcnow(),
        reserved=reserved,
        rule_version_id=campaign.current_version_id,
    ):
        raise PoolClosed(f"a {pool.status.value} pool cannot open", details={"status": pool.status.value})
    accounts = campaign_accounts(pool.merchant_id, pool.campaign_id)
    post_entry(
        key=f"pool-open:{pool.id}",
        reason=EntryReason.RESERVE,
        cause_type="pool",
        cause_id=str(pool.id),
        lines=[(accounts.budget, -reserved), (accounts.reserved, reserved)],
        merchant_id=pool.merchant_id,
        rule_version_id=campaign.current_version_id,
        memo=f"reserve pool {pool.id}: {pool.count} shares",
    )
    split = split_fixed if pool.split is SplitKind.FIXED else split_random
    shares = [hot.Share(seq, fen) for seq, fen in enumerate(split(pool.total.fen, pool.count), start=1)]
    db.session.execute(
        PoolShare.__table__.insert(),  # type: ignore[attr-defined]
        [{"pool_id": pool.id, "seq": share.seq, "amount": Money(share.fen)} for share in shares],
    )
    # Redis gets the shares once they are the record (should this fail, the first grab rebuilds them).
    hot.after_commit(hot.rebuild, hot.Ref(pool.merchant_id, pool.id), state="open", left=shares, who=[])
    record_audit(
        actor=actor,
        action="pool.open",
        target_type="pool",
        target_id=pool.id,
        merchant_id=merchant_id,
        after={"reserved_fen": reserved.fen},
    )
    db.session.refresh(pool)
    return pool


def close_pool(*, merchant_id: int, pool_id: int, actor: Actor, now: datetime | None = None) -> Pool:
    """Close the pool, give back what no grant took (once), and mark best luck (手气最佳).

    On PostgreSQL the pool row is locked FOR UPDATE first: it waits for every grab transaction holding
    it FOR KEY SHARE, so the grants summed below are all there will ever be (a later grab sees
    ``closed`` and is refused). SQLite runs writing transactions one at a time.
    """
    pool = db.session.scalar(
        select(Pool).where(Pool.id == pool_id, Pool.merchant_id == merchant_id).with_for_update()
    )
    if pool is None:
        raise PoolNotFound("no such pool")
    was_open = pool.status is PoolStatus.OPEN
    if not guarded_update(
        Pool,
        pool.id,
        Pool.status.in_([PoolStatus.DRAFT, PoolStatus.OPEN]),
        status=PoolStatus.CLOSED,
        closed_at=now or utcnow(),
    ):
        raise PoolClosed("this pool is closed already", details={"status": PoolStatus.CLOSED.value})
    if was_open:
        taken = Money(
            int(
                db.session.scalar(
                    select(func.coalesce(func.sum(type_coerce(PoolGrant.reserved, BigInteger)), 0)).where(
                        PoolGrant.pool_id == pool.id
                    )
                )
                or 0
            )
        )
        release = pool.reserved - taken
        if release.fen > 0:
            accounts = campaign_accounts(pool.merchant_id, pool.campaign_id)
            post_entry(
                key=f"pool-close:{pool.id}",
                reason=EntryReason.RELEASE,
                cause_type="pool",
                cause_id=str(pool.id),
                lines=[(accounts.reserved, -release), (accounts.budget, release)],
                merchant_id=pool.merchant_id,
                rule_version_id=pool.rule_version_id,
                memo=f"release unclaimed shares of pool {pool.id}",
            )
        guarded_update(Pool, pool.id, released=release, best_grant_id=best_grant_of(pool.id))
    record_audit(
        actor=actor, action="pool.close", target_type="pool", target_id=pool.id, merchant_id=merchant_id
    )
    hot.after_commit(hot.forget, hot.Ref(pool.merchant_id, pool.id))
    db.session.refresh(pool)
    return pool


def best_grant_of(pool_id: int) -> int | None:
    """手气最佳: the largest share grabbed (the earliest grab on a tie)."""
    return db.session.scalar(
        select(PoolGrant.id)
        .where(PoolGrant.pool_id == pool_id)
        .order_by(PoolGrant.amount.desc(), PoolGrant.id)
        .limit(1)
    )


def close_due(now: datetime | None = None, limit: int = 100) -> int:
    """Close open pools whose window ended (periodic); each in its own transaction."""
    now = now or utcnow()
    due = db.session.execute(
        select(Pool.id, Pool.merchant_id)
        .where(Pool.status == PoolStatus.OPEN, Pool.ends_at <= now)
        .order_by(Pool.id)
        .limit(limit)
    ).all()
    closed = 0
    for pool_id, merchant_id in due:
        try:
            close_pool(merchant_id=merchant_id, pool_id=pool_id, actor=Actor("system"), now=now)
            db.session.commit()
            closed += 1
        except PoolClosed:
            db.session.rollback()
    return closed


# ---------------------------------------------------------------- grab


@dataclass(frozen=True)
class GrabResult:
    pool_id: int
    grant_id: int
    seq: int
    amount: Money
    red_packet_id: int | None  # None for a cash share (paid to WeChat change right after)
    share_token: str


def grab(
    *,
    merchant_id: int,
    consumer_id: int,
    pool_id: int,
    share_token: str | None = None,
    now: datetime | None = None,
) -> GrabResult:
    """Grab one share: checks, then ONE Redis step, then the grant and its red packet committed here,
    before the answer. Refusals change nothing (a Redis step already made is undone)."""
    now = now or utcnow()
    # The pool's terms (immutable once open) from a per-process cache: no statement before the Redis
    # step. Whether it is still open, and the grabber still in good standing, is decided under the pool
    # row's lock in the statement that writes the grant (below), not here.
    pool = _terms(merchant_id, pool_id)
    _check_open(pool, now)
    _check_audience(pool, consumer_id)
    sharer_id = fission.sharer_of(share_token, pool_id=pool.id, grabber_id=consumer_id)
    ref = hot.Ref(pool.merchant_id, pool.id)
    # "Grabbed already?" is the Redis set's answer (PostgreSQL's unique (pool, consumer) backs it). The
    # risk engine's counters run inside the same Redis step (docs/risk.md): one round trip for both.
    plan = plan_request_claim(
        merchant_id=pool.merchant_id, consumer_id=consumer_id, kind="pool_grab", reference=f"pool:{pool.id}"
    )
    try:
        share, decision = _take(ref, consumer_id, plan)
    except AlreadyGrabbed:
        mine = my_grant(pool_id=pool.id, consumer_id=consumer_id)
        details = {"amount_fen": mine.amount.fen} if mine is not None else {}
        raise AlreadyGrabbed("you have grabbed this pool already", details=details) from None
    if current_app.config.get(FAULT_CONFIG_KEY) == "exit-after-redis":
        os._exit(137)
    try:
        if sharer_id is not None:
            transaction_from_here()  # the grant and the sharer's count hold together
        grant = _record(pool, share, consumer_id, sharer_id, now, decision)
        db.session.commit()
    except PoolClosed:
        db.session.rollback()
        hot.give_back(ref, share, consumer_id, share_back=True, user_out=True)
        raise
    except IntegrityError as exc:
        db.session.rollback()
        raise _collided(ref, share, consumer_id, exc) from exc
    except BaseException:
        db.session.rollback()
        _undo_unless_granted(ref, share, consumer_id)
        raise
    # Final: the grant is committed. Its in-flight entry in Redis is left for reconciliation to clear.
    if grant.red_packet_id is None:
        cash.after_grab(grant.id)
    if sharer_id is not None:
        fission.after_grab(ref.pool_id, sharer_id)
    if grant.shared_links and decision is not None and decision.row is not None:
        _merge_groups(decision.row, grant.shared_links)
    return GrabResult(
        pool_id=ref.pool_id,
        grant_id=grant.id,
        seq=grant.seq,
        amount=grant.amount,
        red_packet_id=grant.red_packet_id,
        share_token=fission.token_for(ref.pool_id, consumer_id),
    )


def _check_open(pool: Pool | PoolTerms, now: datetime) -> None:
    if pool.status is not PoolStatus.OPEN or not pool.starts_at <= now < pool.ends_at:
        state = pool.status.value if pool.status is not PoolStatus.OPEN else "outside its window"
        raise PoolClosed(f"this pool is not open ({state})", details={"status": pool.status.value})


def _check_audience(pool: PoolTerms, consumer_id: int) -> None:
    if pool.audience is Audience.FOLLOWERS:
        follows = db.session.scalar(
            select(Follower.id)
            .where(
                Follower.merchant_id == pool.merchant_id,
                Follower.consumer_id == consumer_id,
                Follower.status == FollowStatus.FOLLOWING,
            )
            .limit(1)
        )
        if follows is None:
            raise NotEligible(
                "this pool is for followers of the official account", details={"audience": "followers"}
            )
    elif pool.audience is Audience.NEW_USERS:
        paid = db.session.scalar(
            select(Order.id)
            .where(
                Order.merchant_id == pool.merchant_id,
                Order.consumer_id == consumer_id,
                Order.status == OrderStatus.PAID,
            )
            .limit(1)
        )
        if paid is not None:
            raise NotEligible("this pool is for new customers", details={"audience": "new_users"})


def _take(ref: hot.Ref, consumer_id: int, plan: ClaimPlan | None) -> tuple[hot.Share, Decision | None]:
    """The Redis step (rebuilding a pool Redis lost) and the risk engine's decision on the claim (None:
    the engine is off). A refused claim raises 429 ``risk_limited`` / 403 ``risk_blocked`` with nothing
    taken (its decision committed alone); an allowed one is written with the grant, in its statement."""
    risk = None if plan is None else hot.RiskSteps(plan.steps, plan.now_ms, *plan.veto)
    taken, counted = hot.take(ref, consumer_id, risk)
    for _ in range(REBUILD_WAITS):
        if taken is not hot.Taken.NOT_LOADED:
            break
        # Redis lost the pool: rebuild it from PostgreSQL, or wait for whoever is rebuilding it.
        if not rebuild_pool(ref.pool_id):
            time.sleep(0.02)
        taken, counted = hot.take(ref, consumer_id, risk)
    decision = None
    if plan is not None and counted is not None:
        decision = conclude_claim(plan, counted)
        if decision.refused:
            if isinstance(taken, hot.Share):  # the script must have refused it too; should it not, undo
                logger.error("pool %s: a share was taken for a claim the risk engine refused", ref.pool_id)
                hot.give_back(ref, taken, consumer_id, share_back=True, user_out=True)
            settle_claim(decision)  # raises
    if isinstance(taken, hot.Share):
        return taken, decision
    if taken is hot.Taken.REFUSED:  # the script refused what the engine allows: both read the same values
        logger.error("pool %s: the Redis step refused a claim the risk engine allows", ref.pool_id)
        raise PoolBusy("the pool is busy; try again")
    if taken is hot.Taken.ALREADY:
        raise AlreadyGrabbed("you have grabbed this pool already")
    if taken is hot.Taken.EMPTY:
        raise PoolEmpty("every share of this pool has been grabbed")
    if taken is hot.Taken.NOT_LOADED:
        raise PoolBusy("the pool is being loaded; try again")
    raise PoolClosed("this pool is not open", details={"status": "closed"})


def _record(
    pool: PoolTerms,
    share: hot.Share,
    consumer_id: int,
    sharer_id: int | None,
    now: datetime,
    decision: Decision | None = None,
) -> Granted:
    """The grant, its red packet and the risk engine's ``decision`` (with the links it saw first) written
    under the pool row's lock, only while the pool is open and the grabber active. FOR KEY SHARE: grabs never wait for each other, and a close (FOR UPDATE) waits for
    every grab that locked the pool open, so none commits a grant after the close summed them; a grab that
    comes after a close locked the row waits, then finds it closed. On PostgreSQL it is one statement
    (the locking read and the inserts in data-modifying WITHs); SQLite runs writers one at a time."""
    amount = Money(share.fen)
    reserve = amount + pool.legs_worst_case
    grant = {
        "pool_id": pool.id,
        "merchant_id": pool.merchant_id,
        "seq": share.seq,
        "consumer_id": consumer_id,
        "amount": amount,
        "reserved": reserve,
        "red_packet_id": None,
        "via_sharer_id": sharer_id,
        "created_at": now,
    }
    row = (
        None
        if pool.payout is not PoolPayout.RED_PACKET
        else _packet_row(pool, amount, reserve, consumer_id, now)
    )
    written_row = decision.row if decision is not None else None
    shared: list[tuple[LinkKind, str]] = []
    if db.session.get_bind().dialect.name == "postgresql":
        params = {f"p_{k}": v for k, v in (row or {}).items()} | grant
        params |= {"open_status": PoolStatus.OPEN, "active_status": ConsumerStatus.ACTIVE}
        links = None
        if decision is not None and written_row is not None:
            links = len(decision.new_links)
            params |= claim_params(written_row, decision.new_links)
        statement = _grant_statement(tuple(row) if row is not None else None, tuple(grant), links)
        written = db.session.execute(statement, params).first()
        if written is None:
            raise _why_not_granted(pool.id, consumer_id)
        grant_id, packet_id = written[0], written[1]
        if decision is not None and written_row is not None:
            decision.record_id = int(written[2])
            shared = claim_links(written_row, written[3], decision.seen_shared)
    else:
        standing = db.session.execute(
            select(
                Pool.status, select(Consumer.status).where(Consumer.id == consumer_id).scalar_subquery()
            ).where(Pool.id == pool.id)
        ).one()
        if standing != (PoolStatus.OPEN, ConsumerStatus.ACTIVE):
            raise _why_not_granted(pool.id, consumer_id)
        packet_id = insert_packet(row) if row is not None else None
        grant_id = db.session.execute(_INSERT_GRANT, grant | {"red_packet_id": packet_id}).scalar_one()
        if decision is not None:
            persist(decision)
    if sharer_id is not None:
        fission.count_grab_through(pool.id, sharer_id)
    return Granted(int(grant_id), share.seq, amount, packet_id, shared)


def _why_not_granted(pool_id: int, consumer_id: int) -> Exception:
    status, standing = db.session.execute(
        select(
            Pool.status, select(Consumer.status).where(Consumer.id == consumer_id).scalar_subquery()
        ).where(Pool.id == pool_id)
    ).one()
    if status is not PoolStatus.OPEN:
        return PoolClosed("this pool closed meanwhile", details={"status": status.value})
    if standing is not ConsumerStatus.ACTIVE:
        return ConsumerBanned("this account cannot grab red packets")
    return PoolBusy("the pool changed meanwhile; try again")


def _check_fission(
    payout: PoolPayout,
    fission_count: int | None,
    split: SplitKind,
    total: Money,
    count: int,
    problems: dict[str, list[str]],
) -> None:
    """A fission-cash pool: each share becomes one group red packet of ``fission_count`` packets, so every
    share must lie within what WeChat accepts for that group (§5.3), known at creation only for a fixed split."""
    if payout is not PoolPayout.FISSION_CASH:
        if fission_count is not None:
            problems["fission_count"] = ["only for payout fission_cash"]
        return
    if fission_count is None or not FISSION_MIN <= fission_count <= FISSION_MAX:
        problems["fission_count"] = [f"required for fission_cash: between {FISSION_MIN} and {FISSION_MAX}"]
        return
    if split is not SplitKind.FIXED:
        problems["split"] = [
            "fission_cash needs a fixed split: WeChat splits each share again among the friends, and a "
            "random pre-split could make a share smaller than the group's minimum"
        ]
        return
    if not 1 <= count <= MAX_SHARES:
        return
    low = fission_count * FISSION_PACKET_MIN_FEN
    high = fission_count * FISSION_PACKET_MAX_FEN
    smallest, largest = total.fen // count, -(-total.fen // count)
    if smallest < low:
        problems["total_fen"] = [
            f"each share ({smallest} fen) must be at least {low} fen: a fission red packet of "
            f"{fission_count} gives each of them at least 1 yuan on average (WeChat's minimum)"
        ]
    elif largest > high:
        problems["total_fen"] = [
            f"each share ({largest} fen) must be at most {high} fen: a fission red packet of "
            f"{fission_count} averages at most 200 yuan a packet (WeChat's maximum)"
        ]


def _packet_row(
    pool: PoolTerms, amount: Money, reserve: Money, consumer_id: int, now: datetime
) -> dict[str, Any]:
    assert pool.rule_version_id is not None
    terms = IssueRedPacket(
        rule_id=f"pool:{pool.id}",
        recipient_id=consumer_id,
        face_value=amount,
        min_spend=pool.min_spend,
        valid_until=now + timedelta(days=pool.valid_days),
        issuer_rate_bp=pool.issuer_rate_bp,
        buyer_rate_bp=pool.buyer_rate_bp,
        max_order_fen=pool.max_order,
        issuer_cap_fen=None,
        buyer_cap_fen=None,
        worst_case_cost=reserve,
    )
    return granted_packet_row(
        terms,
        merchant_id=pool.merchant_id,
        campaign_id=pool.campaign_id,
        rule_version_id=pool.rule_version_id,
        valid_from=now,
    )


_grants = cast(Table, PoolGrant.__table__)
_packets = cast(Table, RedPacket.__table__)
_INSERT_GRANT = insert(_grants).returning(_grants.c.id)


@functools.cache
def _grant_statement(
    packet_columns: tuple[str, ...] | None, grant_columns: tuple[str, ...], decision_links: int | None
) -> TextClause:
    """``WITH open_pool AS (SELECT … FOR KEY SHARE), new_packet AS (INSERT INTO red_packets … SELECT … FROM
    open_pool RETURNING id), g AS (INSERT INTO pool_grants … SELECT … FROM new_packet RETURNING id,
    red_packet_id)[, rd AS (INSERT INTO risk_decisions … FROM g)[, rl AS (INSERT INTO risk_links …)]]
    SELECT g.id, g.red_packet_id[, rd.id, <links shared>] FROM g [JOIN rd ON true]``: no row when the pool
    is not open or the grabber not active (then nothing is written). Without ``packet_columns`` (a cash
    share), no packet; without ``decision_links`` (the engine off), no decision. ``grant_columns``: the
    grant's columns the grab writes (the others start NULL: a cash share's later steps). A text statement
    built once per shape: the risk link insert's ON CONFLICT has no cache key in SQLAlchemy's constructs."""
    pools, consumers = cast(Table, Pool.__table__), cast(Table, Consumer.__table__)
    # Only the models' own table and column names are formatted in; every value is a bound parameter.
    for table, names in ((_grants, grant_columns), (_packets, packet_columns or ())):
        if unknown := set(names) - set(table.c.keys()):
            raise ValueError(f"not columns of {table.name}: {sorted(unknown)}")
    parts = [
        "open_pool AS (SELECT pools.id FROM pools WHERE pools.id = :pool_id AND pools.status = :open_status "
        "AND EXISTS (SELECT 1 FROM consumers WHERE consumers.id = :consumer_id "
        "AND consumers.status = :active_status) FOR KEY SHARE OF pools)"
    ]
    params: list[Any] = [
        bindparam("open_status", type_=pools.c.status.type),
        bindparam("active_status", type_=consumers.c.status.type),
    ]
    source = "open_pool"
    if packet_columns is not None:
        packet_values = ", ".join(f":p_{name}" for name in packet_columns)
        parts.append(
            f"new_packet AS (INSERT INTO red_packets ({', '.join(packet_columns)}) "  # noqa: S608
            f"SELECT {packet_values} FROM open_pool RETURNING id)"
        )
        params += [bindparam(f"p_{name}", type_=_packets.c[name].type) for name in packet_columns]
        source = "new_packet"
    values = ", ".join(
        "new_packet.id" if name == "red_packet_id" and packet_columns is not None else f":{name}"
        for name in grant_columns
    )
    parts.append(
        f"g AS (INSERT INTO pool_grants ({', '.join(grant_columns)}) SELECT {values} FROM {source} "  # noqa: S608
        "RETURNING id, red_packet_id)"
    )
    params += [
        bindparam(name, type_=_grants.c[name].type)
        for name in grant_columns
        if not (name == "red_packet_id" and packet_columns is not None)
    ]
    columns, join = "g.id, g.red_packet_id", ""
    if decision_links is not None:
        claim = claim_sql(decision_links, "g")
        parts.append(claim.ctes)
        columns, join = f"{columns}, {claim.columns}", claim.join
        params += claim.params
    sql = f"WITH {', '.join(parts)} SELECT {columns} FROM g {join}"  # noqa: S608
    return text(sql).bindparams(*params)


@dataclass(frozen=True)
class PoolTerms:
    """What a grab needs of a pool, fixed once it opened (its status is read again under the lock)."""

    id: int
    merchant_id: int
    campaign_id: int
    rule_version_id: int
    status: PoolStatus
    starts_at: datetime
    ends_at: datetime
    audience: Audience
    payout: PoolPayout
    min_spend: Money
    valid_days: int
    issuer_rate_bp: int
    buyer_rate_bp: int
    max_order: Money
    legs_worst_case: Money


TERMS_SECONDS = 5.0
_TERMS = "hongli.pool_terms"


def _terms(merchant_id: int, pool_id: int) -> PoolTerms:
    """An open pool's terms, read once per app every TERMS_SECONDS (another merchant's: not found)."""
    cache: dict[tuple[int, int], tuple[float, PoolTerms]] = current_app.extensions.setdefault(_TERMS, {})
    cached = cache.get((merchant_id, pool_id))
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    pool = get_pool(merchant_id=merchant_id, pool_id=pool_id)
    terms = PoolTerms(
        id=pool.id,
        merchant_id=pool.merchant_id,
        campaign_id=pool.campaign_id,
        rule_version_id=pool.rule_version_id or 0,
        status=pool.status,
        starts_at=pool.starts_at,
        ends_at=pool.ends_at,
        audience=pool.audience,
        payout=pool.payout,
        min_spend=pool.min_spend,
        valid_days=pool.valid_days,
        issuer_rate_bp=pool.issuer_rate_bp,
        buyer_rate_bp=pool.buyer_rate_bp,
        max_order=pool.max_order,
        legs_worst_case=pool.legs_worst_case,
    )
    if pool.status is PoolStatus.OPEN:
        cache[(merchant_id, pool_id)] = (time.monotonic() + TERMS_SECONDS, terms)
    return terms


@dataclass(frozen=True)
class Granted:
    id: int
    seq: int
    amount: Money
    red_packet_id: int | None
    shared_links: list[tuple[LinkKind, str]]  # the new links another consumer has too (PostgreSQL)


def _merge_groups(row: dict[str, Any], shared: list[tuple[LinkKind, str]]) -> None:
    """The grabber's new links another consumer has too: their linked-account groups merge, in a
    transaction of its own once the grant is committed (the grab is final whatever happens here; a merge
    lost to a crash is made when the next consumer is seen with that identifier)."""
    try:
        claim_written(row, shared)
        db.session.commit()
    except Exception:  # the database or Redis (the groups' cache): the grab stands, answered as final
        db.session.rollback()
        logger.exception(
            "pool grab: merging the linked-account groups of consumer %s failed", row["consumer_id"]
        )


def _undo_unless_granted(ref: hot.Ref, share: hot.Share, consumer_id: int) -> None:
    """An unexpected failure around the grant's statement. In autocommit the statement commits by itself,
    so a failure after it (or a lost reply) may follow a grant that stands: give back only what
    PostgreSQL does not hold. Should PostgreSQL not answer either, the share stays in flight for
    reconciliation, which gives it back after the grace period unless its grant is there."""
    try:
        held = db.session.execute(
            select(PoolGrant.seq, PoolGrant.consumer_id).where(
                PoolGrant.pool_id == ref.pool_id,
                (PoolGrant.seq == share.seq) | (PoolGrant.consumer_id == consumer_id),
            )
        ).all()
        db.session.rollback()
    except Exception:
        db.session.rollback()
        logger.exception("pool %s share %s: left in flight for reconciliation", ref.pool_id, share.seq)
        return
    with contextlib.suppress(hot.RedisUnavailable, redis.RedisError):
        hot.give_back(
            ref,
            share,
            consumer_id,
            share_back=all(seq != share.seq for seq, _ in held),
            user_out=all(holder != consumer_id for _, holder in held),
        )


def _collided(ref: hot.Ref, share: hot.Share, consumer_id: int, exc: IntegrityError) -> Exception:
    """A unique constraint refused the grant: PostgreSQL already holds this share or this consumer."""
    owner = db.session.scalar(
        select(PoolGrant.consumer_id).where(PoolGrant.pool_id == ref.pool_id, PoolGrant.seq == share.seq)
    )
    mine = db.session.scalar(
        select(PoolGrant.amount).where(PoolGrant.pool_id == ref.pool_id, PoolGrant.consumer_id == consumer_id)
    )
    # The share goes back only if nobody holds it; the consumer stays marked only if they hold a grant.
    hot.give_back(ref, share, consumer_id, share_back=owner is None, user_out=mine is None)
    if mine is not None:
        return AlreadyGrabbed("you have grabbed this pool already", details={"amount_fen": mine.fen})
    logger.warning("pool %s share %s was granted already (Redis rebuilt meanwhile)", ref.pool_id, share.seq)
    return PoolBusy("that share was taken meanwhile; try again")


# ---------------------------------------------------------------- Redis from PostgreSQL


def rebuild_pool(pool_id: int, *, force: bool = False) -> bool:
    """Rebuild a pool's Redis keys from PostgreSQL (Redis lost them, or ``force``); False if another
    process is at it or Redis holds the pool after all."""
    pool = db.session.get(Pool, pool_id)
    if pool is None:
        return False
    ref = hot.Ref(pool.merchant_id, pool.id)
    if not hot.claim(ref, "rebuilding", seconds=10):
        return False
    try:
        # A pool no longer open needs no shares in Redis: its state alone refuses grabs.
        left, who = _pg_state(pool_id) if pool.status is PoolStatus.OPEN else ([], [])
        state = "open" if pool.status is PoolStatus.OPEN else "closed"
        if not hot.rebuild(ref, state=state, left=left, who=who, force=force):
            return False
        logger.info("pool %s rebuilt in Redis from PostgreSQL: %d shares left", pool_id, len(left))
        return True
    finally:
        hot.release(ref, "rebuilding")


def _pg_state(pool_id: int) -> tuple[list[hot.Share], list[int]]:
    granted: dict[int, int] = dict(
        db.session.execute(select(PoolGrant.seq, PoolGrant.consumer_id).where(PoolGrant.pool_id == pool_id))
        .tuples()
        .all()
    )
    shares = db.session.execute(
        select(PoolShare.seq, PoolShare.amount).where(PoolShare.pool_id == pool_id).order_by(PoolShare.seq)
    ).all()
    left = [hot.Share(seq, amount.fen) for seq, amount in shares if seq not in granted]
    return left, list(granted.values())


def grants_of(pool_id: int) -> list[PoolGrant]:
    return list(
        db.session.scalars(select(PoolGrant).where(PoolGrant.pool_id == pool_id).order_by(PoolGrant.id))
    )


def my_grant(*, pool_id: int, consumer_id: int) -> PoolGrant | None:
    return db.session.scalar(
        select(PoolGrant).where(PoolGrant.pool_id == pool_id, PoolGrant.consumer_id == consumer_id)
    )


def record_share_open(*, merchant_id: int, pool_id: int, token: str) -> bool:
    """A friend opened a share link of the merchant's pool (the funnel's first step); False for a bad token."""
    get_pool(merchant_id=merchant_id, pool_id=pool_id)
    return fission.record_open(pool_id=pool_id, token=token)


def shares_left(*, merchant_id: int, pool_id: int) -> dict[str, int]:
    """The live counter of a pool page: shares still to grab, from Redis (PostgreSQL if Redis lost it)."""
    left = hot.left(hot.Ref(merchant_id, pool_id))
    if left is None:
        pool = get_pool(merchant_id=merchant_id, pool_id=pool_id)
        grabbed = db.session.scalar(select(func.count()).where(PoolGrant.pool_id == pool.id)) or 0
        left = pool.count - grabbed if pool.status is PoolStatus.OPEN else 0
    return {"pool_id": pool_id, "shares_left": left}


def consumer_view(*, merchant_id: int, pool_id: int, consumer_id: int) -> dict[str, Any]:
    """What the mini-program shows: the pool, how much is left, the consumer's own grab and share link."""
    pool = get_pool(merchant_id=merchant_id, pool_id=pool_id)
    grabbed = db.session.scalar(select(func.count()).where(PoolGrant.pool_id == pool.id)) or 0
    mine = my_grant(pool_id=pool.id, consumer_id=consumer_id)
    best_id = pool.best_grant_id
    if best_id is None and grabbed == pool.count:
        best_id = best_grant_of(pool.id)  # fully grabbed: best luck is decided before the close
    best = db.session.get(PoolGrant, best_id) if best_id else None
    return {
        "pool": pool,
        "shares_left": pool.count - grabbed if pool.status is PoolStatus.OPEN else 0,
        "my_grant": mine,
        "best_luck": best is not None and mine is not None and best.id == mine.id,
        "share_token": fission.token_for(pool.id, consumer_id) if mine is not None else None,
    }
