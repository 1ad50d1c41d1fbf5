"""Ledger checks of pools (run by ``flask ledger check``): shares sum to the total, the pool's own
entries net to what it still holds, no consumer or share is granted twice, and a fission packet's unopened
part is booked back once, as its grant says."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, String, and_, cast, func, literal, not_, or_, select, type_coerce

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
    of its reason moving it out of paid out and into its campaign's budget, less than the share its
    succeeded group packet paid; 0, no entry; and every such entry is of a grant that says so."""
    fen = type_coerce(Posting.amount, BigInteger)

    def moved(kind: AccountKind, owner: Any) -> Any:
        return (
            select(func.coalesce(func.sum(fen), 0))
            .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
            .where(Posting.entry_id == JournalEntry.id, LedgerAccount.kind == kind, owner)
            .correlate(JournalEntry, Pool, PoolGrant)
            .scalar_subquery()
        )

    into_budget = moved(AccountKind.CAMPAIGN_BUDGET, LedgerAccount.owner_id == Pool.campaign_id)
    out_of_paid = moved(AccountKind.PAYOUTS_SETTLED, LedgerAccount.merchant_id == PoolGrant.merchant_id)
    unopened = type_coerce(PoolGrant.unopened, BigInteger)
    booked = and_(JournalEntry.id.is_not(None), JournalEntry.reason == EntryReason.FISSION_UNOPENED)
    problems = [
        f"pool grant {grant_id}: unopened {amount} fen (share {share} fen, group packet {status}), entry "
        f"{entry_id} moving {into} fen into its campaign's budget and {-out} fen out of paid out"
        for grant_id, amount, share, status, entry_id, into, out in db.session.execute(
            select(
                PoolGrant.id,
                unopened,
                type_coerce(PoolGrant.reserved, BigInteger),
                Payout.status,
                JournalEntry.id,
                into_budget,
                out_of_paid,
            )
            .join(Pool, Pool.id == PoolGrant.pool_id)
            .outerjoin(Payout, and_(Payout.source_type == POOL_GRANT, Payout.source_id == PoolGrant.id))
            .outerjoin(
                JournalEntry,
                JournalEntry.idempotency_key == literal("pool-unopened:") + cast(PoolGrant.id, String),
            )
            .where(
                PoolGrant.unopened.is_not(None),
                or_(
                    and_(unopened == 0, JournalEntry.id.is_not(None)),
                    and_(
                        unopened > 0,
                        or_(
                            not_(booked),
                            into_budget != unopened,
                            out_of_paid != -unopened,
                            unopened >= type_coerce(PoolGrant.reserved, BigInteger),
                            Payout.id.is_(None),
                            Payout.status != PayoutStatus.SUCCEEDED,
                        ),
                    ),
                ),
            )
            .order_by(PoolGrant.id)
            .limit(MAX_LISTED)
        )
    ]
    # The entries, few, the other way: each names a grant recording its amount, by the grant's key.
    entries = db.session.execute(
        select(JournalEntry.id, JournalEntry.idempotency_key, JournalEntry.cause_type, JournalEntry.cause_id)
        .where(JournalEntry.reason == EntryReason.FISSION_UNOPENED)
        .order_by(JournalEntry.id)
    ).all()
    ids = [int(cause) for _, _, _, cause in entries if cause is not None and cause.isdigit()]
    recorded: dict[int, int] = {}
    if ids:
        for grant_id, amount in db.session.execute(
            select(PoolGrant.id, unopened).where(PoolGrant.id.in_(ids), PoolGrant.unopened.is_not(None))
        ):
            recorded[int(grant_id)] = int(amount)
    for entry_id, key, cause_type, cause in entries:
        grant_id = int(cause) if cause is not None and cause.isdigit() else None
        if cause_type != POOL_GRANT or grant_id is None or key != f"pool-unopened:{grant_id}":
            problems.append(f"entry {entry_id} ({key}) books a fission packet's unopened part of no grant")
        elif not recorded.get(grant_id):
            problems.append(f"entry {entry_id} ({key}): its grant records no unopened part")
    return problems[:MAX_LISTED]


def register() -> None:
    register_check("pools_agree_with_ledger", pools_agree_with_ledger)
    register_check("pool_grants_match_shares", pool_grants_match_shares)
    register_check("pools.fission_unopened_booked_once", fission_unopened_booked_once)
