"""Redis against PostgreSQL, after any crash: resolve in-flight takes, rebuild lost pools, prove agreement.

For each open pool: an in-flight share (Redis handed it out; a grab never clears its own entry) is final
once its grant is in PostgreSQL (the entry is cleared, whatever its age), and given back (share to the
list, user out of the set) when it has no grant and is older than the grace period.
Then the proof: Redis's shares left + in flight + PostgreSQL's grants are exactly the pool's shares (no
share twice, none missing), the grabbed set is exactly the grantees (and in-flight holders), and the
ledger holds for the pool exactly what it reserved less what it released and what grants took.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import BigInteger, String, cast, func, select, type_coerce

from app.extensions import db
from app.ledger.models import AccountKind, JournalEntry, LedgerAccount, Posting
from app.pools import hot
from app.pools.models import Pool, PoolGrant, PoolShare, PoolStatus
from app.pools.service import rebuild_pool

GRACE_MS = 30_000  # longer than any grab's transaction can take (statement timeouts are far shorter)


@dataclass
class PoolReport:
    pool_id: int
    rebuilt: bool = False
    finalised: int = 0
    given_back: int = 0
    busy: bool = False
    problems: list[str] = field(default_factory=list)


def reconcile_pool(pool_id: int, *, grace_ms: int = GRACE_MS) -> PoolReport:
    """Resolve one pool's in-flight takes and prove Redis and PostgreSQL agree (rebuilding if not)."""
    report = PoolReport(pool_id)
    pool = db.session.get(Pool, pool_id)
    if pool is None:
        report.problems.append("no such pool")
        return report
    report.problems.extend(ledger_problems(pool))
    if pool.status is not PoolStatus.OPEN:
        return report
    ref = hot.Ref(pool.merchant_id, pool.id)
    if not hot.claim(ref, "reconciling", seconds=60):
        report.busy = True  # another reconciler is at this pool now
        return report
    try:
        hot.forget_legacy(ref)
        _reconcile_open(pool, ref, report, grace_ms)
    finally:
        hot.release(ref, "reconciling")
    return report


def _reconcile_open(pool: Pool, ref: hot.Ref, report: PoolReport, grace_ms: int) -> None:
    pool_id = pool.id
    if hot.snapshot(ref).state is None:
        report.rebuilt = rebuild_pool(pool_id)
    # The grants first, then Redis: a grab committing in between is in flight in the snapshot, not missing.
    granted: dict[int, int] = dict(
        db.session.execute(select(PoolGrant.seq, PoolGrant.consumer_id).where(PoolGrant.pool_id == pool_id))
        .tuples()
        .all()
    )
    holders = set(granted.values())
    snap = hot.snapshot(ref)
    cutoff = hot.now_ms() - grace_ms
    final = [(seq, consumer) for seq, (consumer, _) in snap.flight.items() if granted.get(seq) == consumer]
    report.finalised = hot.settle(ref, final)
    stale = {
        seq: consumer
        for seq, (consumer, ms) in snap.flight.items()
        if ms <= cutoff and granted.get(seq) != consumer
    }
    amounts: dict[int, int] = {}
    if stale:
        amounts = {
            seq: amount.fen
            for seq, amount in db.session.execute(
                select(PoolShare.seq, PoolShare.amount).where(
                    PoolShare.pool_id == pool_id, PoolShare.seq.in_(list(stale))
                )
            ).tuples()
        }
    for seq, consumer in stale.items():
        # Its share goes back unless someone else holds its grant (Redis was rebuilt meanwhile).
        share = hot.Share(seq, amounts.get(seq, 0))
        hot.give_back(ref, share, consumer, share_back=seq not in granted, user_out=consumer not in holders)
        report.given_back += 1
    snap = hot.snapshot(ref)
    mismatch = _redis_problems(pool, snap, granted)
    if mismatch and not snap.flight:
        # Nothing is in flight, so PostgreSQL alone says what Redis must hold.
        report.rebuilt = rebuild_pool(pool_id, force=True) or report.rebuilt
        mismatch = _redis_problems(pool, hot.snapshot(ref), granted)
    report.problems.extend(mismatch)


def _redis_problems(pool: Pool, snap: hot.Snapshot, granted: dict[int, int]) -> list[str]:
    problems: list[str] = []
    left = [share.seq for share in snap.left]
    seen = left + list(snap.flight) + list(granted)
    if len(seen) != len(set(seen)):
        problems.append(f"pool {pool.id}: a share is both in Redis and granted (or twice in Redis)")
    if set(seen) != set(range(1, pool.count + 1)):
        problems.append(
            f"pool {pool.id}: Redis {len(left)} left + {len(snap.flight)} in flight + {len(granted)} granted "
            f"!= {pool.count} shares"
        )
    expected_who = set(granted.values()) | {consumer for consumer, _ in snap.flight.values()}
    if snap.who != expected_who:
        problems.append(
            f"pool {pool.id}: Redis's grabbed set differs from the grants by {len(snap.who ^ expected_who)}"
        )
    return problems


def ledger_problems(pool: Pool) -> list[str]:
    """Shares sum to the total; the pool's own ledger entries net to reserved − released."""
    problems: list[str] = []
    if pool.status is PoolStatus.DRAFT:
        return problems
    shares = db.session.execute(
        select(func.count(), func.coalesce(func.sum(type_coerce(PoolShare.amount, BigInteger)), 0)).where(
            PoolShare.pool_id == pool.id
        )
    ).one()
    if int(shares[0]) != pool.count or int(shares[1]) != pool.total.fen:
        problems.append(
            f"pool {pool.id}: {shares[0]} shares of {shares[1]} fen, not {pool.count} of {pool.total.fen}"
        )
    moved = db.session.scalar(
        select(func.coalesce(func.sum(type_coerce(Posting.amount, BigInteger)), 0))
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(
            JournalEntry.cause_type == "pool",
            JournalEntry.cause_id == cast(pool.id, String),
            LedgerAccount.kind == AccountKind.CAMPAIGN_RESERVED,
        )
    )
    if int(moved or 0) != (pool.reserved - pool.released).fen:
        problems.append(
            f"pool {pool.id}: ledger reserved net {moved} fen, pool says {(pool.reserved - pool.released).fen}"
        )
    return problems


def reconcile_open_pools(*, grace_ms: int = GRACE_MS) -> list[PoolReport]:
    """Every open pool (the periodic job, the CLI and start-up call this)."""
    ids = db.session.scalars(select(Pool.id).where(Pool.status == PoolStatus.OPEN).order_by(Pool.id)).all()
    reports = []
    for pool_id in ids:
        reports.append(reconcile_pool(pool_id, grace_ms=grace_ms))
        # Each pool's grants read afresh (SQLite reads in one snapshot per transaction).
        db.session.commit()
    return reports
