"""Withdrawals: available → withdrawing atomically, policy checks, review.

Guards (each holds on PostgreSQL and SQLite at any isolation level; see docs/operations.md):
- the same client key → the same withdrawal: the unique ``(merchant, consumer, idempotency_key)``
  decides, a loser of that insert returns the winner's withdrawal;
- the daily limit: a counter row per consumer and Beijing day, taken with ``UPDATE … WHERE used + n
  <= limit`` (:mod:`app.limits.service`), given back when the withdrawal is rejected;
- the money: the ledger's conditional balance UPDATE refuses any overdraft;
- review: approve and reject are ``UPDATE … WHERE status = 'pending_review'``, so exactly one decision
  wins, and the unique ``payouts(source_type, source_id)`` allows one payout per withdrawal.
The consumer's wallet rows are still locked first on PostgreSQL: that only makes a consumer's
concurrent requests queue instead of losing, it is not what keeps them right.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.audit.service import Actor, record_audit
from app.core.db import utcnow
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.guards import guarded_update
from app.core.money import Money
from app.extensions import db
from app.ledger.accounts import consumer_accounts
from app.ledger.models import EntryReason, LedgerAccount
from app.ledger.service import Overdraft, post_entry
from app.limits.service import WITHDRAWAL_DAILY_FEN, give_back, take, used
from app.merchants.models import Merchant
from app.payouts.models import Payout, PayoutStatus
from app.payouts.service import create_payout
from app.risk import Action, Context, Outcome, Subject, current_client, decide
from app.withdrawals.models import WITHDRAWAL_TRANSITIONS, Withdrawal, WithdrawalStatus
from app.withdrawals.rules import beijing_day_start, debt_to_net, fee_for


def _note(withdrawal: Withdrawal, event: str, **extra: object) -> None:
    withdrawal.history = [
        *withdrawal.history,
        {"at": utcnow().isoformat(), "event": event, "status": withdrawal.status.value, **extra},
    ]


def _key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def request_withdrawal(
    *,
    merchant_id: int,
    consumer_id: int,
    amount: Money,
    idempotency_key: str,
    appid: str | None = None,
    now: datetime | None = None,
) -> tuple[Withdrawal, bool]:
    """Move ``amount`` available → withdrawing and record the withdrawal; (withdrawal, created).

    Debt is repaid from available first (only the excess can be withdrawn). Under the merchant's
    ``withdrawal_auto_approve_max`` the payout is created at once, otherwise it waits for review.
    ``appid`` is the merchant's app the consumer asked from: a transfer bill pays their openid of that app.
    """
    now = now or utcnow()
    merchant = db.session.get(Merchant, merchant_id)
    if merchant is None:
        raise NotFound("no such merchant")
    wallet = consumer_accounts(merchant_id, consumer_id)
    # Every bucket looked up (created if new) before any is locked: creating one can wait on another
    # transaction creating it, which must never happen while holding the wallet's locks.
    list(wallet)
    # The per-consumer lock (see module docstring): every bucket of the wallet in ascending id order, as
    # post_entry and a settlement take them, so whatever this request moves later is already held and
    # no lock is taken out of order; populate_existing: the balances below are read under the lock.
    db.session.scalars(
        select(LedgerAccount)
        .where(LedgerAccount.id.in_([account.id for account in wallet]))
        .order_by(LedgerAccount.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    existing = _by_key(merchant_id, consumer_id, idempotency_key)
    if existing is not None:
        return _same_request(existing, amount, idempotency_key), False
    # Risk control: a banned consumer is refused; a held one's withdrawal waits for a person (app.risk).
    risk = decide(
        Action.WITHDRAW,
        Subject(merchant_id, consumer_id),
        Context(
            kind="withdrawal", reference=f"withdrawal:{_key_digest(idempotency_key)}", client=current_client()
        ),
    )
    risk.enforce()
    if amount < merchant.withdrawal_min:
        raise InvalidInput(
            f"the minimum withdrawal is {merchant.withdrawal_min.fen} fen",
            details={"fields": {"amount_fen": [f"must be >= {merchant.withdrawal_min.fen}"]}},
        )
    fee = fee_for(amount, merchant.withdrawal_fee_bp)
    if amount - fee <= Money(0):
        raise InvalidInput(
            "the fee would take the whole amount", details={"fields": {"amount_fen": ["too small"]}}
        )
    day = beijing_day_start(now)
    limit = merchant.withdrawal_daily_limit.fen
    taken = take(
        merchant_id=merchant_id,
        name=WITHDRAWAL_DAILY_FEN,
        subject_id=consumer_id,
        window_start=day,
        amount=amount.fen,
        limit=limit,
    )
    if taken is None:
        used_fen = used(
            merchant_id=merchant_id, name=WITHDRAWAL_DAILY_FEN, subject_id=consumer_id, window_start=day
        )
        raise Conflict(
            "today's withdrawal limit would be exceeded",
            details={"limit_fen": limit, "used_fen": used_fen},
        )
    withdrawal = Withdrawal(
        merchant_id=merchant_id,
        consumer_id=consumer_id,
        idempotency_key=idempotency_key,
        amount=amount,
        fee=fee,
        status=WithdrawalStatus.PENDING_REVIEW,
        appid=appid or None,
        history=[],
        created_at=now,
    )
    try:
        with db.session.begin_nested():
            db.session.add(withdrawal)
    except IntegrityError:
        # A concurrent request with this key inserted first and has committed: its withdrawal is ours.
        winner = _by_key(merchant_id, consumer_id, idempotency_key)
        if winner is None:
            raise
        give_back(
            merchant_id=merchant_id,
            name=WITHDRAWAL_DAILY_FEN,
            subject_id=consumer_id,
            window_start=day,
            amount=amount.fen,
        )
        return _same_request(winner, amount, idempotency_key), False

    key = f"withdrawal:{merchant_id}:{consumer_id}:{_key_digest(idempotency_key)}"
    owed = -wallet.debt.balance if wallet.debt.balance.is_negative else Money(0)
    netted = debt_to_net(wallet.available.balance, owed)
    if netted:
        post_entry(
            key=f"{key}:debt",
            reason=EntryReason.DEBT_NETTING,
            cause_type="withdrawal",
            cause_id=str(withdrawal.id),
            lines=[(wallet.available, -netted), (wallet.debt, netted)],
            merchant_id=merchant_id,
            memo="debt repaid from available before a withdrawal",
        )
    try:
        post_entry(
            key=key,
            reason=EntryReason.WITHDRAW_REQUEST,
            cause_type="withdrawal",
            cause_id=str(withdrawal.id),
            lines=[(wallet.available, -amount), (wallet.withdrawing, amount)],
            merchant_id=merchant_id,
            memo=f"withdrawal {withdrawal.id} requested",
        )
    except Overdraft as exc:
        raise Overdraft(
            "not enough available balance" + (" after repaying debt" if netted else ""),
            details={**exc.details, "debt_netted_fen": netted.fen},
        ) from exc
    _note(withdrawal, "requested", amount_fen=amount.fen, fee_fen=fee.fen, debt_netted_fen=netted.fen)
    if risk.outcome is Outcome.HOLD:
        _note(withdrawal, "held by risk control", reasons=risk.reasons)
    elif amount <= merchant.withdrawal_auto_approve_max:
        _approve(
            _decide(merchant_id, withdrawal.id, WithdrawalStatus.APPROVED, None), merchant, reviewer=None
        )
    return withdrawal, True


def _by_key(merchant_id: int, consumer_id: int, idempotency_key: str) -> Withdrawal | None:
    return db.session.scalar(
        select(Withdrawal).where(
            Withdrawal.merchant_id == merchant_id,
            Withdrawal.consumer_id == consumer_id,
            Withdrawal.idempotency_key == idempotency_key,
        )
    )


def _same_request(existing: Withdrawal, amount: Money, idempotency_key: str) -> Withdrawal:
    if existing.amount != amount:
        raise Conflict(
            "this idempotency_key was used for another amount",
            details={"idempotency_key": idempotency_key, "amount_fen": existing.amount.fen},
        )
    return existing


def _decide(
    merchant_id: int, withdrawal_id: int, target: WithdrawalStatus, reviewer: int | None
) -> Withdrawal:
    """Move a withdrawal out of review with one conditional UPDATE: exactly one concurrent decision wins.

    The losers get a 409 with the state the winner left (404 if there is no such withdrawal).
    """
    assert target in WITHDRAWAL_TRANSITIONS[WithdrawalStatus.PENDING_REVIEW]
    decided = guarded_update(
        Withdrawal,
        withdrawal_id,
        Withdrawal.merchant_id == merchant_id,
        Withdrawal.status == WithdrawalStatus.PENDING_REVIEW,
        status=target,
        reviewed_by=reviewer,
        updated_at=utcnow(),
    )
    withdrawal = db.session.scalar(
        select(Withdrawal)
        .where(Withdrawal.id == withdrawal_id, Withdrawal.merchant_id == merchant_id)
        .execution_options(populate_existing=True)
    )
    if withdrawal is None:
        raise NotFound("no such withdrawal")
    if not decided:
        raise Conflict(
            f"withdrawal is {withdrawal.status.value}",
            details={"status": withdrawal.status.value, "payout_id": withdrawal.payout_id},
        )
    return withdrawal


def _approve(withdrawal: Withdrawal, merchant: Merchant, reviewer: int | None) -> None:
    """Create the payout of a withdrawal that :func:`_decide` has just moved to approved."""
    payout = create_payout(
        merchant=merchant,
        consumer_id=withdrawal.consumer_id,
        source_type="withdrawal",
        source_id=withdrawal.id,
        amount=withdrawal.net,
        fee=withdrawal.fee,
        appid=withdrawal.appid,
    )
    withdrawal.payout_id = payout.id
    _note(withdrawal, "approved" if reviewer is not None else "auto_approved", payout_id=payout.id)


def approve_withdrawal(*, merchant_id: int, withdrawal_id: int, staff_id: int, actor: Actor) -> Withdrawal:
    """Finance approves a withdrawal under review: its payout is created and queued."""
    withdrawal = _decide(merchant_id, withdrawal_id, WithdrawalStatus.APPROVED, staff_id)
    merchant = db.session.get(Merchant, merchant_id)
    assert merchant is not None
    _approve(withdrawal, merchant, reviewer=staff_id)
    record_audit(
        actor=actor,
        action="withdrawal.approve",
        target_type="withdrawal",
        target_id=withdrawal.id,
        merchant_id=merchant_id,
        before={"status": WithdrawalStatus.PENDING_REVIEW.value},
        after={"status": withdrawal.status.value, "payout_id": withdrawal.payout_id},
    )
    return withdrawal


def reject_withdrawal(
    *, merchant_id: int, withdrawal_id: int, reason: str, staff_id: int, actor: Actor
) -> Withdrawal:
    """Finance rejects a withdrawal under review: the money returns to available; the user sees ``reason``."""
    withdrawal = _decide(merchant_id, withdrawal_id, WithdrawalStatus.REJECTED, staff_id)
    withdrawal.reason = reason[:255]
    wallet = consumer_accounts(merchant_id, withdrawal.consumer_id)
    post_entry(
        key=f"withdrawal:{withdrawal.id}:reject",
        reason=EntryReason.WITHDRAW_CANCEL,
        cause_type="withdrawal",
        cause_id=str(withdrawal.id),
        lines=[(wallet.withdrawing, -withdrawal.amount), (wallet.available, withdrawal.amount)],
        merchant_id=merchant_id,
        memo=f"withdrawal rejected: {reason}"[:255],
    )
    # The counter after the wallet, as a request takes them (wallet, then counter): on PostgreSQL a
    # reject and a new request of the same consumer then queue instead of deadlocking.
    give_back(
        merchant_id=merchant_id,
        name=WITHDRAWAL_DAILY_FEN,
        subject_id=withdrawal.consumer_id,
        window_start=beijing_day_start(withdrawal.created_at),
        amount=withdrawal.amount.fen,
    )
    _note(withdrawal, "rejected", reason=withdrawal.reason)
    record_audit(
        actor=actor,
        action="withdrawal.reject",
        target_type="withdrawal",
        target_id=withdrawal.id,
        merchant_id=merchant_id,
        before={"status": WithdrawalStatus.PENDING_REVIEW.value},
        after={"status": withdrawal.status.value, "reason": withdrawal.reason},
    )
    return withdrawal


# ------------------------------------------------------------------ reads


_PAYOUT_STATE = {
    PayoutStatus.CREATED: "paying",
    PayoutStatus.SUBMITTING: "paying",
    PayoutStatus.UNKNOWN: "paying",
    PayoutStatus.ACCEPTED: "paying",
    PayoutStatus.SUCCEEDED: "paid",
    PayoutStatus.FAILED: "returned",
}


def withdrawal_view(
    withdrawal: Withdrawal, payout: Payout | None, merchant: Merchant | None = None
) -> dict[str, Any]:
    """What the consumer and finance see: one state, why, and the merged history."""
    state = withdrawal.status.value
    reason = withdrawal.reason
    confirm: dict[str, Any] | None = None
    history = list(withdrawal.history)
    if payout is not None:
        state = _PAYOUT_STATE[payout.status]
        if payout.status is PayoutStatus.ACCEPTED and payout.wechat_state == "WAIT_USER_CONFIRM":
            state = "awaiting_confirmation"
            if payout.package_info and merchant is not None:
                # What wx.requestMerchantTransfer needs (§6.1).
                confirm = {
                    "mch_id": merchant.mchid,
                    "appid": payout.appid,
                    "package_info": payout.package_info,
                }
        if payout.status is PayoutStatus.FAILED:
            reason = payout.failure_reason
        history += [
            {k: v for k, v in item.items() if k in ("at", "event", "status", "state")}
            for item in payout.history
        ]
    return {
        "id": withdrawal.id,
        "consumer_id": withdrawal.consumer_id,
        "amount_fen": withdrawal.amount.fen,
        "fee_fen": withdrawal.fee.fen,
        "net_fen": withdrawal.net.fen,
        "status": state,
        "reason": reason,
        "rail": payout.rail.value if payout is not None else None,
        "confirm": confirm,
        "created_at": withdrawal.created_at,
        "history": sorted(history, key=lambda item: str(item.get("at", ""))),
    }


def _views(withdrawals: list[Withdrawal]) -> list[dict[str, Any]]:
    payout_ids = [w.payout_id for w in withdrawals if w.payout_id is not None]
    payouts = (
        {p.id: p for p in db.session.scalars(select(Payout).where(Payout.id.in_(payout_ids)))}
        if payout_ids
        else {}
    )
    return [withdrawal_view(w, payouts.get(w.payout_id) if w.payout_id else None) for w in withdrawals]


def withdrawals_of(*, merchant_id: int, consumer_id: int, limit: int = 50) -> list[dict[str, Any]]:
    rows = db.session.scalars(
        select(Withdrawal)
        .where(Withdrawal.merchant_id == merchant_id, Withdrawal.consumer_id == consumer_id)
        .order_by(Withdrawal.id.desc())
        .limit(limit)
    ).all()
    return _views(list(rows))


def withdrawal_of(*, merchant_id: int, consumer_id: int, withdrawal_id: int) -> dict[str, Any]:
    withdrawal = db.session.scalar(
        select(Withdrawal).where(
            Withdrawal.id == withdrawal_id,
            Withdrawal.merchant_id == merchant_id,
            Withdrawal.consumer_id == consumer_id,
        )
    )
    if withdrawal is None:
        raise NotFound("no such withdrawal")
    payout = db.session.get(Payout, withdrawal.payout_id) if withdrawal.payout_id else None
    return withdrawal_view(withdrawal, payout, db.session.get(Merchant, merchant_id))


def list_for_console(
    *, merchant_id: int, status: WithdrawalStatus | None, limit: int = 100
) -> list[dict[str, Any]]:
    query = select(Withdrawal).where(Withdrawal.merchant_id == merchant_id)
    if status is not None:
        query = query.where(Withdrawal.status == status)
    return _views(list(db.session.scalars(query.order_by(Withdrawal.id.desc()).limit(limit))))


def view_of(withdrawal: Withdrawal) -> dict[str, Any]:
    payout = db.session.get(Payout, withdrawal.payout_id) if withdrawal.payout_id else None
    return withdrawal_view(withdrawal, payout, db.session.get(Merchant, withdrawal.merchant_id))
