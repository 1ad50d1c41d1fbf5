"""Pool sweeps: close pools whose window ended, reconcile Redis with PostgreSQL, pay fission tiers, book
the unopened part of fission red packets back to the budget."""

from __future__ import annotations

import logging

from app.extensions import db
from app.pools.cash import collect_unopened, unopened_due, unpaid_cash_grants
from app.pools.cash import pay_cash_share as pay_share
from app.pools.fission import reward_tiers as pay_tiers
from app.pools.reconcile import reconcile_open_pools
from app.pools.service import close_due

logger = logging.getLogger("hongli.pools")


def close_pools() -> int:
    """Close every open pool past its window: unclaimed shares go back to the campaign budget."""
    return close_due()


def reconcile_pools() -> int:
    """Mark committed grabs final in Redis (a grab leaves that to this job), give back in-flight takes a
    crash left behind, prove Redis and PostgreSQL agree; pay cash shares whose job was lost. Returns the
    problems left."""
    reports = reconcile_open_pools()
    db.session.commit()
    for grant_id in unpaid_cash_grants():
        pay_cash_share(grant_id)
    return sum(len(report.problems) for report in reports)


def pay_cash_share(grant_id: int) -> bool:
    """Pay one cash share (exactly once: the grant row decides)."""
    paid = pay_share(grant_id)
    db.session.commit()
    return paid


def reward_tiers(pool_id: int, sharer_id: int) -> int:
    """Pay the fission tiers a sharer reached (each once)."""
    paid = pay_tiers(pool_id, sharer_id)
    db.session.commit()
    return len(paid)


def collect_unopened_shares() -> int:
    """Ask WeChat about each fission packet opened a day ago or more whose unopened part is not known yet:
    what came back is booked to the campaign's budget (each grant in its own transaction). Returns how
    many were booked or found all opened."""
    settled = 0
    for grant_id in unopened_due():
        try:
            if collect_unopened(grant_id) in ("booked", "all_opened"):
                settled += 1
            db.session.commit()
        except Exception:  # one packet's trouble (its merchant's keys, a bad row) must not stop the others
            db.session.rollback()
            logger.exception("pool grant %s: could not collect its fission packet's unopened part", grant_id)
    return settled
