"""Withdrawal and payout invariants across tables, as ledger checks (``flask --app wsgi ledger check``).

A withdrawal is carried to WeChat by its payout; concurrent approvals once created several (issue #18) and
WeChat paid one withdrawal twice. These checks name that damage: payouts beyond their withdrawal, a second
success, a payout its withdrawal does not point at, and ledger entries out of step with a payout's state.
Set-wise SQL, violation strings capped like the ledger's own checks; :func:`register` adds them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, String, and_, case, cast, func, literal, not_, or_, select, type_coerce
from sqlalchemy.orm import aliased
from sqlalchemy.sql import ColumnElement

from app.extensions import db
from app.ledger.checks import MAX_LISTED, register_check
from app.ledger.models import EntryReason, JournalEntry, Posting
from app.payouts.models import Payout, PayoutStatus
from app.withdrawals.models import Withdrawal, WithdrawalStatus

WITHDRAWAL = "withdrawal"
POOL_GRANT = "pool_grant"  # a fission-cash pool share (app.pools.cash): one group red packet, no withdrawal
# Any other source is reported until it has its rules.
# The payout's ledger steps (app.payouts.service._ledger): key payout:{id}:{step}, and the reason of each.
STEPS: dict[str, EntryReason] = {
    "submit": EntryReason.PAYOUT_SUBMIT,
    "settle": EntryReason.PAYOUT_SETTLE,
    "return": EntryReason.PAYOUT_RETURN,
}


def _fen(column: Any) -> ColumnElement[int]:
    # Sums as plain integers of fen (the Money column type refuses bare ints).
    return type_coerce(column, BigInteger)


def _capped(rows: list[str]) -> list[str]:
    if len(rows) > MAX_LISTED:
        return [*rows[:MAX_LISTED], "… more not listed"]
    return rows


def _step_key(step: str) -> ColumnElement[str]:
    return literal("payout:") + cast(Payout.id, String) + literal(f":{step}")


def withdrawal_paid_at_most_once() -> list[str]:
    """Per withdrawal: its payouts not failed carry (amount + fee) no more than the withdrawal's amount,
    and at most one of them succeeded."""
    live = func.coalesce(
        func.sum(
            case((Payout.status != PayoutStatus.FAILED, _fen(Payout.amount) + _fen(Payout.fee)), else_=0)
        ),
        0,
    )
    succeeded = func.coalesce(func.sum(case((Payout.status == PayoutStatus.SUCCEEDED, 1), else_=0)), 0)
    rows = db.session.execute(
        select(Withdrawal.id, _fen(Withdrawal.amount), func.count(Payout.id), live, succeeded)
        .join(Payout, and_(Payout.source_type == WITHDRAWAL, Payout.source_id == Withdrawal.id))
        .group_by(Withdrawal.id, Withdrawal.amount)
        .having(or_(live > _fen(Withdrawal.amount), succeeded > 1))
        .order_by(Withdrawal.id)
        .limit(MAX_LISTED + 1)
    ).all()
    return _capped(
        [
            f"withdrawal {withdrawal_id} of {amount} fen: {n} payouts carry {live_fen} fen not failed, "
            f"{n_succeeded} succeeded"
            for withdrawal_id, amount, n, live_fen, n_succeeded in rows
        ]
    )


def withdrawal_and_payout_agree() -> list[str]:
    """An approved withdrawal points at a payout of its own (and only an approved one does); every payout
    is the one its withdrawal points at, for the same merchant, consumer, amount and fee."""
    violations: list[str] = []
    carrier = aliased(Payout)
    approved = Withdrawal.status == WithdrawalStatus.APPROVED
    for withdrawal_id, status, payout_id, source_type, source_id in db.session.execute(
        select(Withdrawal.id, Withdrawal.status, Withdrawal.payout_id, carrier.source_type, carrier.source_id)
        .outerjoin(carrier, carrier.id == Withdrawal.payout_id)
        .where(
            or_(
                and_(approved, Withdrawal.payout_id.is_(None)),
                and_(not_(approved), Withdrawal.payout_id.is_not(None)),
                and_(
                    Withdrawal.payout_id.is_not(None),
                    or_(
                        carrier.id.is_(None),
                        carrier.source_type != WITHDRAWAL,
                        carrier.source_id != Withdrawal.id,
                    ),
                ),
            )
        )
        .order_by(Withdrawal.id)
        .limit(MAX_LISTED + 1)
    ):
        target = "no payout" if payout_id is None else f"payout {payout_id} (of {source_type} {source_id})"
        violations.append(f"withdrawal {withdrawal_id} is {status.value} and points at {target}")

    for payout_id, status, source_type, source_id, w_id, w_status, w_payout in db.session.execute(
        select(
            Payout.id,
            Payout.status,
            Payout.source_type,
            Payout.source_id,
            Withdrawal.id,
            Withdrawal.status,
            Withdrawal.payout_id,
        )
        .outerjoin(Withdrawal, and_(Payout.source_type == WITHDRAWAL, Withdrawal.id == Payout.source_id))
        .where(
            Payout.source_type != POOL_GRANT,
            or_(
                Withdrawal.id.is_(None),
                Withdrawal.payout_id.is_distinct_from(Payout.id),
                Withdrawal.status != WithdrawalStatus.APPROVED,
                Withdrawal.merchant_id != Payout.merchant_id,
                Withdrawal.consumer_id != Payout.consumer_id,
                _fen(Withdrawal.fee) != _fen(Payout.fee),
                _fen(Withdrawal.amount) != _fen(Payout.amount) + _fen(Payout.fee),
            ),
        )
        .order_by(Payout.id)
        .limit(MAX_LISTED + 1)
    ):
        if w_id is None:
            why = f"its source {source_type} {source_id} is no withdrawal"
        elif w_payout != payout_id:
            why = f"withdrawal {w_id} ({w_status.value}) points at payout {w_payout}"
        elif w_status is not WithdrawalStatus.APPROVED:
            why = f"withdrawal {w_id} is {w_status.value}"
        else:
            why = f"withdrawal {w_id} differs in merchant, consumer, amount or fee"
        violations.append(f"payout {payout_id} ({status.value}): {why}")
    return _capped(violations)


def pool_grant_payouts_match_grants() -> list[str]:
    """A payout of a pool share (``pool_grant``) is that grant's: same merchant and consumer, the grant's
    whole reservation, no fee, a group size; at most one per grant (the unique source decides)."""
    from app.pools.models import PoolGrant

    rows = db.session.execute(
        select(Payout.id, Payout.status, Payout.source_id, PoolGrant.id)
        .outerjoin(PoolGrant, PoolGrant.id == Payout.source_id)
        .where(
            Payout.source_type == POOL_GRANT,
            or_(
                PoolGrant.id.is_(None),
                PoolGrant.merchant_id != Payout.merchant_id,
                PoolGrant.consumer_id != Payout.consumer_id,
                _fen(PoolGrant.reserved) != _fen(Payout.amount),
                _fen(Payout.fee) != 0,
                Payout.group_size.is_(None),
            ),
        )
        .order_by(Payout.id)
        .limit(MAX_LISTED + 1)
    ).all()
    return _capped(
        [
            f"payout {payout_id} ({status.value}) of pool grant {source_id}: "
            + (
                "no such grant"
                if grant_id is None
                else "differs from its grant (merchant, consumer, amount, fee)"
            )
            for payout_id, status, source_id, grant_id in rows
        ]
    )


def payout_ledger_follows_status() -> list[str]:
    """A payout's ledger steps are those of its state: ``submit`` once it left ``created``, ``settle`` iff
    it succeeded, ``return`` iff it failed, each moving exactly amount + fee; no other payout entries."""
    violations: list[str] = []
    entries = {step: aliased(JournalEntry) for step in STEPS}
    moved = {
        step: select(func.coalesce(func.sum(_fen(Posting.amount)), 0))
        .where(Posting.entry_id == entry.id, _fen(Posting.amount) > 0)
        .correlate(entry)
        .scalar_subquery()
        for step, entry in entries.items()
    }
    expected = {
        "submit": Payout.status != PayoutStatus.CREATED,
        "settle": Payout.status == PayoutStatus.SUCCEEDED,
        "return": Payout.status == PayoutStatus.FAILED,
    }
    gross = _fen(Payout.amount) + _fen(Payout.fee)
    query = select(Payout.id, Payout.status, gross, *(moved[step] for step in STEPS))
    wrong = []
    for step, entry in entries.items():
        query = query.outerjoin(entry, entry.idempotency_key == _step_key(step))
        present = entry.id.is_not(None)
        wrong.append(present != expected[step])
        wrong.append(and_(present, or_(moved[step] != gross, entry.reason != STEPS[step])))
    for payout_id, status, gross_fen, *moved_fen in db.session.execute(
        query.where(or_(*wrong)).order_by(Payout.id).limit(MAX_LISTED + 1)
    ):
        booked = ", ".join(f"{step} {fen} fen" for step, fen in zip(STEPS, moved_fen, strict=True) if fen)
        violations.append(
            f"payout {payout_id} is {status.value} ({gross_fen} fen): its ledger holds {booked or 'nothing'}"
        )

    # Entries that name a payout but are none of its three steps (or name a payout that does not exist).
    step_keys = [_step_key(step) for step in STEPS]
    for entry_id, key, reason in db.session.execute(
        select(JournalEntry.id, JournalEntry.idempotency_key, JournalEntry.reason)
        .outerjoin(Payout, cast(Payout.id, String) == JournalEntry.cause_id)
        .where(
            or_(
                JournalEntry.cause_type == "payout",
                JournalEntry.idempotency_key.like("payout:%"),
                JournalEntry.reason.in_(list(STEPS.values())),
            ),
            or_(
                Payout.id.is_(None),
                JournalEntry.cause_type != "payout",
                not_(JournalEntry.idempotency_key.in_(step_keys)),
            ),
        )
        .order_by(JournalEntry.id)
        .limit(MAX_LISTED + 1)
    ):
        violations.append(f"entry {entry_id} ({key}, {reason.value}) is no step of an existing payout")
    return _capped(violations)


def register() -> None:
    """Add the payout checks to ``ledger check`` (idempotent: re-registering replaces)."""
    register_check("payouts.withdrawal_paid_at_most_once", withdrawal_paid_at_most_once)
    register_check("payouts.withdrawal_and_payout_agree", withdrawal_and_payout_agree)
    register_check("payouts.ledger_follows_status", payout_ledger_follows_status)
    register_check("payouts.pool_grant_payouts_match_grants", pool_grant_payouts_match_grants)
