"""Cash shares: a grabbed share paid to the consumer's WeChat change on the existing payout rails.

Off the grab's hot path (the grab commits the grant, then this runs as a job): the share's reservation
moves from the campaign's reserve to the consumer's available wallet (one entry, keyed by the grant),
then a withdrawal of it is requested — the payout path that cash rebates take (``app/rebates`` does the
same), whose rails pick 商家转账 for everyone and ``sendredpack`` only where the merchant's account has it.
Exactly once: ``UPDATE pool_grants SET paid_at … WHERE paid_at IS NULL`` decides, and the entry's and the
withdrawal's keys are the grant's. A withdrawal the merchant's policy refuses (minimum, daily limit)
leaves the money available to withdraw later, as for cash rebates.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from app.core.db import utcnow
from app.core.errors import DomainError
from app.core.guards import guarded_update
from app.extensions import db
from app.ledger.accounts import campaign_accounts, consumer_accounts
from app.ledger.models import EntryReason
from app.ledger.service import post_entry
from app.pools.models import Pool, PoolGrant

logger = logging.getLogger("hongli.pools")


def after_grab(grant_id: int) -> None:
    """A cash share was granted (committed): pay it by a job; the sweep catches a lost one."""
    from app.queue.queues import get_queue

    try:
        get_queue().enqueue("jobs.pools.pay_cash_share", grant_id)
    except Exception:
        logger.exception("could not enqueue the cash payment of pool grant %s", grant_id)


def pay_cash_share(grant_id: int) -> bool:
    """Move a cash grant's money to its consumer and request its payout; False if done already."""
    from app.withdrawals.service import request_withdrawal

    if not guarded_update(
        PoolGrant,
        grant_id,
        PoolGrant.paid_at.is_(None),
        PoolGrant.red_packet_id.is_(None),
        paid_at=utcnow(),
    ):
        return False
    grant = db.session.get(PoolGrant, grant_id)
    pool = db.session.get(Pool, grant.pool_id) if grant is not None else None
    assert grant is not None and pool is not None
    wallet = consumer_accounts(grant.merchant_id, grant.consumer_id)
    list(wallet)  # every bucket exists before any is locked (as a withdrawal request takes them)
    post_entry(
        key=f"pool-cash:{grant.id}",
        reason=EntryReason.SETTLE,
        cause_type="pool_grant",
        cause_id=str(grant.id),
        lines=[
            (campaign_accounts(grant.merchant_id, pool.campaign_id).reserved, -grant.reserved),
            (wallet.available, grant.reserved),
        ],
        merchant_id=grant.merchant_id,
        rule_version_id=pool.rule_version_id,
        memo=f"cash share {grant.seq} of pool {pool.id}",
    )
    try:
        with db.session.begin_nested():
            request_withdrawal(
                merchant_id=grant.merchant_id,
                consumer_id=grant.consumer_id,
                amount=grant.reserved,
                idempotency_key=f"pool-cash:{grant.id}",
            )
    except DomainError as exc:
        logger.info("cash share of pool grant %s stays available: %s", grant.id, exc.message)
    return True


def unpaid_cash_grants(limit: int = 500) -> list[int]:
    """Cash grants whose payment job was lost (the sweep pays them)."""
    return list(
        db.session.scalars(
            select(PoolGrant.id)
            .where(PoolGrant.red_packet_id.is_(None), PoolGrant.paid_at.is_(None))
            .order_by(PoolGrant.id)
            .limit(limit)
        )
    )
