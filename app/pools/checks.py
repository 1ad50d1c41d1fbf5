"""Ledger checks of pools (run by ``flask ledger check``): shares sum to the total, the pool's own
entries net to what it still holds, no consumer or share is granted twice, and a fission packet's unopened
part is booked back once, as its grant says."""

from __future__ import annotations

from sqlalchemy import BigInteger, String, and_, cast, func, literal, or_, select, type_coerce

from app.extensions import db
from app.ledger.checks import MAX_LISTED, register_check
from app.ledger.models import AccountKind, EntryReason, JournalEntry, LedgerAccount, Posting
from app.payouts.models import Payout, PayoutStatus
from app.pools.cash import POOL_GRANT
from app.pools.models import Pool, PoolGrant, PoolShare
from app.pools.reconcile import ledger_problems


def pools_agree_with_ledger() -> list[str]:
    problems: list[str] = []
    for pool in db.session.scalars(select(Pool).order_by(Pool.id)):
        problems.extend(ledger_problems(pool))
    return problems[:20]


def pool_grants_match_shares() -> list[str]:
    """Each grant is the amount of its share."""
    rows = db.session.execute(
        select(PoolGrant.pool_id, PoolGrant.seq)
        .join(
            PoolShare,
            (PoolShare.pool_id == PoolGrant.pool_id) & (PoolShare.seq == PoolGrant.seq),
            isouter=True,
        )
        .where((PoolShare.id.is_(None)) | (PoolShare.amount != PoolGrant.amount))
        .limit(20)
    ).all()
    over = db.session.execute(
        select(Pool.id)
        .join(PoolGrant, PoolGrant.pool_id == Pool.id)
        .group_by(Pool.id, Pool.count)
        .having(func.count() > Pool.count)
    ).all()
    return [f"pool {p} grant of share {s} does not match its share" for p, s in rows] + [
        f"pool {p}: more grants than shares" for (p,) in over
    ]


def fission_unopened_booked_once() -> list[str]:
    """A fission grant's unopened part (``unopened``): above 0, exactly one entry ``pool-unopened:<grant>``
    of its reason moving it from paid out into its campaign's budget, less than the share its succeeded
    group packet paid; 0 or unknown, no entry; and no such entry of anything else."""
    fen = type_coerce(Posting.amount, BigInteger)
    into_budget = (
        select(func.coalesce(func.sum(fen), 0))
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(
            Posting.entry_id == JournalEntry.id,
            LedgerAccount.kind == AccountKind.CAMPAIGN_BUDGET,
            LedgerAccount.owner_id == Pool.campaign_id,
        )
        .correlate(JournalEntry, Pool)
        .scalar_subquery()
    )
    key = literal("pool-unopened:") + cast(PoolGrant.id, String)
    unopened = type_coerce(PoolGrant.unopened, BigInteger)
    rows = db.session.execute(
        select(
            PoolGrant.id, unopened, type_coerce(PoolGrant.reserved, BigInteger), JournalEntry.id, into_budget
        )
        .join(Pool, Pool.id == PoolGrant.pool_id)
        .outerjoin(JournalEntry, JournalEntry.idempotency_key == key)
        .outerjoin(Payout, and_(Payout.source_type == POOL_GRANT, Payout.source_id == PoolGrant.id))
        .where(
            or_(
                and_(
                    unopened > 0,
                    or_(JournalEntry.id.is_(None), JournalEntry.reason != EntryReason.FISSION_UNOPENED),
                ),
                and_(
                    unopened > 0,
                    or_(into_budget != unopened, unopened >= type_coerce(PoolGrant.reserved, BigInteger)),
                ),
                and_(unopened > 0, or_(Payout.id.is_(None), Payout.status != PayoutStatus.SUCCEEDED)),
                and_(or_(PoolGrant.unopened.is_(None), unopened == 0), JournalEntry.id.is_not(None)),
            )
        )
        .order_by(PoolGrant.id)
        .limit(MAX_LISTED)
    ).all()
    problems = [
        f"pool grant {grant_id}: unopened {amount} fen (share {share} fen), entry {entry_id} moving {moved} "
        "fen into its campaign's budget, or its group packet did not succeed"
        for grant_id, amount, share, entry_id, moved in rows
    ]
    strays = db.session.scalars(
        select(JournalEntry.id)
        .outerjoin(PoolGrant, cast(PoolGrant.id, String) == JournalEntry.cause_id)
        .where(
            JournalEntry.reason == EntryReason.FISSION_UNOPENED,
            or_(
                PoolGrant.id.is_(None),
                JournalEntry.cause_type != POOL_GRANT,
                JournalEntry.idempotency_key != literal("pool-unopened:") + JournalEntry.cause_id,
            ),
        )
        .limit(MAX_LISTED)
    ).all()
    return problems + [
        f"entry {entry_id} books a fission packet's unopened part of no grant" for entry_id in strays
    ]


def register() -> None:
    register_check("pools_agree_with_ledger", pools_agree_with_ledger)
    register_check("pool_grants_match_shares", pool_grants_match_shares)
    register_check("pools.fission_unopened_booked_once", fission_unopened_booked_once)
