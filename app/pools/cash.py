"""Cash shares: a grabbed share paid to the consumer's WeChat change on the existing payout rails.

Off the grab's hot path (the grab commits the grant, then this runs as a job): the share's reservation
moves from the campaign's reserve to the consumer's available wallet (one entry, keyed by the grant),
then a withdrawal of it is requested — the payout path that cash rebates take (``app/rebates`` does the
same), whose rails pick 商家转账 for everyone and ``sendredpack`` only where the merchant's account has it.
Exactly once: ``UPDATE pool_grants SET paid_at … WHERE paid_at IS NULL`` decides, and the entry's and the
withdrawal's keys are the grant's. A withdrawal the merchant's policy refuses (minimum, daily limit)
leaves the money available to withdraw later, as for cash rebates.

A fission-cash share is instead one ``sendgroupredpack`` (§5.3) of its amount: reserve → the grabber's
withdrawing bucket and a payout of source ``pool_grant`` on the payout state machine (no withdrawal: no
fee, no policy — the group packet must be the share, whole). Where the merchant's account has no cash red
packets — known beforehand, or learnt from WeChat's refusal of this very packet (then the payout failed and
the money is back in available) — the share goes the default way above, once (``fallback_at``).

A group packet whose seed opened it has been paid (the payout succeeded), but the friends' packets nobody
opened go back to the merchant when its day is over (§5.5: 24 hours, 72 by the older rules). The hourly
sweep asks WeChat (``gethbinfo``) about each such packet from a day after it was opened: ``refund_amount``
is booked back from paid out to the campaign's budget, where the pool's unclaimed shares go too (once: the
grant's ``unopened`` decides, the entry is keyed by the grant); every packet opened (``hblist``) records 0.
One still unaccounted for three days on is put to a person (review item ``fission_unopened_unknown``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select

from app.core.db import utcnow
from app.core.errors import DomainError
from app.core.guards import guarded_update
from app.core.money import Money
from app.extensions import db
from app.ledger.accounts import campaign_accounts, consumer_accounts, platform_account
from app.ledger.models import AccountKind, EntryReason
from app.ledger.service import post_entry
from app.pools.models import Pool, PoolGrant, PoolPayout

logger = logging.getLogger("hongli.pools")

POOL_GRANT = "pool_grant"  # the payout source of a fission-cash share (payouts.source_type)
# WeChat gives a packet's unopened part back 24 h after sending it, or 72 h by the older rules (§5.5,
# DISAGREE): asked from a day after the seed opened it (sent before that), until three days after.
FIRST_LOOK = timedelta(hours=24, minutes=15)
LAST_LOOK = timedelta(hours=73)
ASK_EVERY = timedelta(hours=1)


def after_grab(grant_id: int) -> None:
    """A cash share was granted (committed): pay it by a job; the sweep catches a lost one."""
    from app.queue.queues import get_queue

    try:
        get_queue().enqueue("jobs.pools.pay_cash_share", grant_id)
    except Exception:
        logger.exception("could not enqueue the cash payment of pool grant %s", grant_id)


def pay_cash_share(grant_id: int) -> bool:
    """Pay a cash grant (a fission-cash pool's as one group red packet where the merchant's account has
    them, else on the default rails); False if done already."""
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
    if pool.payout is PoolPayout.FISSION_CASH:
        if _pay_fission(grant, pool):
            return True
        guarded_update(PoolGrant, grant.id, PoolGrant.fallback_at.is_(None), fallback_at=utcnow())
    _to_wallet(grant, pool)
    _withdraw(grant)
    return True


def _pay_fission(grant: PoolGrant, pool: Pool) -> bool:
    """The share as ONE ``sendgroupredpack`` of its amount and ``fission_count`` packets (§5.3): reserve →
    the grabber's withdrawing bucket, then a payout keyed by the grant (bill number fixed before any call;
    the payout state machine pays it once and queries every unknown outcome). False, with nothing written,
    when the merchant's account has no cash red packets or the grabber no official-account openid."""
    from app.merchants.models import Merchant, PayoutRail
    from app.payouts.capabilities import cash_red_packets_off
    from app.payouts.service import create_payout, recipient

    merchant = db.session.get(Merchant, grant.merchant_id)
    assert merchant is not None and pool.fission_count is not None
    if cash_red_packets_off(merchant.id):
        logger.info("pool grant %s: cash red packets are off for the merchant; default rail", grant.id)
        return False
    try:
        recipient(merchant, grant.consumer_id, rail=PayoutRail.CASH_RED_PACKET)
    except DomainError as exc:
        logger.info("pool grant %s: no official-account openid (%s); default rail", grant.id, exc.message)
        return False
    wallet = consumer_accounts(grant.merchant_id, grant.consumer_id)
    list(wallet)  # every bucket exists before any is locked
    post_entry(
        key=f"pool-cash:{grant.id}",
        reason=EntryReason.SETTLE,
        cause_type="pool_grant",
        cause_id=str(grant.id),
        lines=[
            (campaign_accounts(grant.merchant_id, pool.campaign_id).reserved, -grant.reserved),
            (wallet.withdrawing, grant.reserved),
        ],
        merchant_id=grant.merchant_id,
        rule_version_id=pool.rule_version_id,
        memo=f"fission cash share {grant.seq} of pool {pool.id}",
    )
    create_payout(
        merchant=merchant,
        consumer_id=grant.consumer_id,
        source_type=POOL_GRANT,
        source_id=grant.id,
        amount=grant.reserved,
        fee=Money(0),
        group_size=pool.fission_count,
    )
    return True


def fall_back_cash_share(payout_id: int) -> bool:
    """WeChat refused a fission share's group red packet for want of the product (its payout failed and
    brought the money back to the grabber's available balance): pay it on the default rail, once — the
    grant's ``fallback_at`` decides, and the withdrawal's key is the grant's. False if done already."""
    from app.payouts.models import Payout

    payout = db.session.get(Payout, payout_id)
    assert payout is not None and payout.source_type == POOL_GRANT
    if not guarded_update(PoolGrant, payout.source_id, PoolGrant.fallback_at.is_(None), fallback_at=utcnow()):
        return False
    grant = db.session.get(PoolGrant, payout.source_id)
    assert grant is not None
    _withdraw(grant)
    return True


def _to_wallet(grant: PoolGrant, pool: Pool) -> None:
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


def _withdraw(grant: PoolGrant) -> None:
    """A withdrawal of the share keyed by the grant: the path cash rebates take (商家转账 for everyone)."""
    from app.withdrawals.service import request_withdrawal

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


# ---------------------------------------------------------------- a fission packet's unopened part


def unopened_due(now: datetime | None = None, limit: int = 200) -> list[int]:
    """Fission grants to ask WeChat about: the group packet's seed opened it a day ago or more, its
    unopened part is not known, nobody was asked to look instead, and it was not asked within the hour —
    the least recently asked first, so a backlog of packets still waiting does not starve newer ones."""
    from app.payouts.models import Payout, PayoutStatus

    now = now or utcnow()
    asked = PoolGrant.unopened_asked_at
    return list(
        db.session.scalars(
            select(PoolGrant.id)
            .join(Payout, (Payout.source_type == POOL_GRANT) & (Payout.source_id == PoolGrant.id))
            .where(
                PoolGrant.unopened.is_(None),
                PoolGrant.unopened_flagged_at.is_(None),
                or_(asked.is_(None), asked <= now - ASK_EVERY),
                Payout.status == PayoutStatus.SUCCEEDED,
                Payout.group_size.is_not(None),
                Payout.finished_at <= now - FIRST_LOOK,
            )
            .order_by(asked.is_not(None), asked, PoolGrant.id)
            .limit(limit)
        )
    )


def collect_unopened(grant_id: int, now: datetime | None = None) -> str:
    """Ask WeChat what of a fission grant's group packet went back unopened and book it to the campaign's
    budget, once. ``booked``; ``all_opened`` (0 recorded); ``waiting`` (asked again in an hour);
    ``unknown`` (asked for the last time, three days on, or an answer that cannot be right: a person is
    asked to compare with the merchant's statement, and the sweep asks no more); ``done`` (nothing to ask).

    Commits the session before asking (no transaction is held across WeChat's answer): a sweep's step."""
    from app.merchants.models import Merchant
    from app.payouts import rails
    from app.payouts.models import Payout, PayoutStatus

    now = now or utcnow()
    grant = db.session.get(PoolGrant, grant_id)
    payout = db.session.scalar(
        select(Payout).where(Payout.source_type == POOL_GRANT, Payout.source_id == grant_id)
    )
    if grant is None or payout is None or grant.unopened is not None or grant.unopened_flagged_at is not None:
        return "done"
    if payout.status is not PayoutStatus.SUCCEEDED or payout.group_size is None or payout.bill_no is None:
        return "done"
    pool = db.session.get(Pool, grant.pool_id)
    assert pool is not None and payout.finished_at is not None
    order = rails.PayoutOrder(
        payout.id,
        payout.bill_no,
        payout.rail,
        payout.appid,
        payout.openid,
        payout.amount.fen,
        payout.group_size,
    )
    paid, size, last = payout.amount.fen, payout.group_size, now >= payout.finished_at + LAST_LOOK
    merchant_id, campaign_id, rule_version_id = grant.merchant_id, pool.campaign_id, pool.rule_version_id
    merchant = rails.payout_merchant(
        merchant_id, db.session.scalar(select(Merchant.updated_at).where(Merchant.id == merchant_id))
    )
    guarded_update(PoolGrant, grant_id, unopened_asked_at=now)
    db.session.commit()  # no transaction held across WeChat's answer; the grant's row decides below
    answer = rails.query(merchant, order)
    back = answer.refunded_fen
    if back and 0 < back < paid:  # the seed opened its own packet: less than the whole came back
        if not guarded_update(PoolGrant, grant_id, PoolGrant.unopened.is_(None), unopened=Money(back)):
            return "done"
        post_entry(
            key=f"pool-unopened:{grant_id}",
            reason=EntryReason.FISSION_UNOPENED,
            cause_type=POOL_GRANT,
            cause_id=str(grant_id),
            lines=[
                (platform_account(AccountKind.PAYOUTS_SETTLED, merchant_id), -Money(back)),
                (campaign_accounts(merchant_id, campaign_id).budget, Money(back)),
            ],
            merchant_id=merchant_id,
            rule_version_id=rule_version_id,
            memo=f"fission packet {order.bill_no}: {back} fen unopened, returned by WeChat",
        )
        return "booked"
    if not back and answer.opened is not None and answer.opened >= size:
        guarded_update(PoolGrant, grant_id, PoolGrant.unopened.is_(None), unopened=Money(0))
        return "all_opened"
    if back or last:
        why = (
            f"WeChat says {back} fen of fission packet {order.bill_no} ({paid} fen, its seed opened it) came "
            "back, which cannot be"
            if back
            else f"fission packet {order.bill_no}: {answer.opened if answer.opened is not None else '?'} of "
            f"{size} opened and no refund reported three days on"
        )
        _ask_a_person(
            merchant_id,
            grant_id,
            now,
            f"{why}; nothing booked — compare with the merchant's statement",
            {
                "bill_no": order.bill_no,
                "amount_fen": paid,
                "refund_amount": back,
                "opened": answer.opened,
                "group_size": size,
            },
        )
        return "unknown"
    return "waiting"


def _ask_a_person(
    merchant_id: int, grant_id: int, now: datetime, reason: str, details: dict[str, Any]
) -> None:
    """The sweep asks no more about this packet; a review item says why (once)."""
    from app.reviews.service import flag_for_review

    if guarded_update(
        PoolGrant,
        grant_id,
        PoolGrant.unopened.is_(None),
        PoolGrant.unopened_flagged_at.is_(None),
        unopened_flagged_at=now,
    ):
        flag_for_review(
            merchant_id=merchant_id,
            kind="fission_unopened_unknown",
            reason=reason,
            reference=f"pool_grant:{grant_id}",
            details=details,
        )
