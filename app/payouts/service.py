"""The payout state machine: claim with a lease, save the state before every WeChat call, apply what
WeChat said under the row lock, move the ledger with keys derived from the payout id.

A pass (see ``jobs.payouts.process_payout``) is three transactions: :func:`claim_payout` +
:func:`begin_pass` (row → SUBMITTING with its bill number before any call), the WeChat calls with no
transaction open, then :func:`record_outcome`. Only the holder of an unexpired claim may call WeChat for a
row, so an orphaned work horse and a retry never submit the same payout at once; the RQ job id plays no part.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from flask import current_app
from sqlalchemy import or_, select, update

from app.core.db import utcnow
from app.core.errors import Conflict, DomainError, NotFound
from app.core.guards import guarded_update
from app.core.money import Money
from app.core.ratelimit import take
from app.extensions import db
from app.ledger.accounts import consumer_accounts, merchant_accounts, platform_account
from app.ledger.models import AccountKind, EntryReason
from app.ledger.service import post_entry
from app.merchants.models import Merchant, PayoutRail
from app.payouts.models import OPEN_STATUSES, PAYOUT_TRANSITIONS, Payout, PayoutStatus
from app.payouts.rails import NO_CREDENTIALS, Outcome, PayoutOrder
from app.queue import QueueName, enqueue_after_commit
from app.reviews.service import flag_for_review
from app.settings import PayoutSettings

logger = logging.getLogger("hongli.payouts")

PROCESS_JOB = "jobs.payouts.process_payout"
POLL_EVERY = timedelta(minutes=10)  # accepted payouts: user confirmation / red-packet opening
NOTENOUGH_WAIT = timedelta(minutes=10)
BACKOFF_BASE_SECONDS = 15
BACKOFF_CAP_SECONDS = 3600

Action = Literal["submit", "resolve", "poll"]

FAILURE_TEXT = {
    "REFUND": "The red packet was not opened within 24 hours; WeChat returned it and the money is back "
    "in your balance.",
    "CANCELLED": "The transfer was not confirmed in time and was cancelled; the money is back in your balance.",
    "FAIL": "WeChat could not complete the transfer; the money is back in your balance.",
    "FAILED": "WeChat could not send the red packet; the money is back in your balance.",
}


# A proven-failed number may be replaced (§5.5: red-packet FAILED — "only now is a new mch_billno safe");
# other final failures (unopened REFUND, a refused or cancelled transfer) return the money instead.
RENUMBER_ON = frozenset({(PayoutRail.CASH_RED_PACKET, "FAILED")})
MAX_ATTEMPTS = 2


def bill_number(payout_id: int, attempt: int = 1) -> str:
    """``HLP`` + 10 digits (+ ``N<attempt>`` after a proven failure): [0-9A-Za-z], ≤ 28 characters for
    ``mch_billno`` (§5.1) and ≤ 32 for ``out_bill_no`` (§6.1)."""
    return f"HLP{payout_id:010d}" + (f"N{attempt}" if attempt > 1 else "")


def _note(payout: Payout, event: str, **extra: object) -> None:
    # Reassigned, not appended, so the JSON column is seen as changed.
    payout.history = [
        *payout.history,
        {"at": utcnow().isoformat(), "event": event, "status": payout.status.value, **extra},
    ]


def _move(payout: Payout, target: PayoutStatus) -> None:
    if target is payout.status:
        return
    if target not in PAYOUT_TRANSITIONS[payout.status]:
        raise Conflict(
            f"payout {payout.id} cannot go from {payout.status.value} to {target.value}",
            details={"status": payout.status.value},
        )
    payout.status = target


def recipient(merchant: Merchant, consumer_id: int) -> tuple[str, str]:
    """(appid, openid) the merchant's rail pays: a red packet needs the official-account openid (§5.1)."""
    from app.consumers.models import WeChatIdentity

    appid = merchant.oa_appid if merchant.payout_rail is PayoutRail.CASH_RED_PACKET else merchant.mp_appid
    openid = db.session.scalar(
        select(WeChatIdentity.openid).where(
            WeChatIdentity.consumer_id == consumer_id, WeChatIdentity.appid == (appid or "")
        )
    )
    if not appid or openid is None:
        raise Conflict(
            "no WeChat identity to pay this consumer on the merchant's payout rail",
            details={"rail": merchant.payout_rail.value},
        )
    return appid, openid


def create_payout(
    *, merchant: Merchant, consumer_id: int, source_type: str, source_id: int, amount: Money, fee: Money
) -> Payout:
    """Save a payout (bill number fixed now, before any call) and queue it after commit.

    The money (``amount + fee``) must already be in the consumer's withdrawing bucket.
    """
    appid, openid = recipient(merchant, consumer_id)
    payout = Payout(
        merchant_id=merchant.id,
        consumer_id=consumer_id,
        source_type=source_type,
        source_id=source_id,
        rail=merchant.payout_rail,
        appid=appid,
        openid=openid,
        amount=amount,
        fee=fee,
        status=PayoutStatus.CREATED,
        next_attempt_at=utcnow(),
        history=[],
    )
    db.session.add(payout)
    db.session.flush()
    payout.bill_no = bill_number(payout.id)
    _note(payout, "created", bill_no=payout.bill_no, rail=payout.rail.value, amount_fen=amount.fen)
    enqueue_after_commit(PROCESS_JOB, payout.id, queue=QueueName.PAYOUTS)
    return payout


def _settings() -> PayoutSettings:
    return current_app.extensions["hongli.settings"].payouts


def confirm_timeout() -> timedelta:
    """Unconfirmed transfer bills are cancelled this long after WeChat accepted them (``payouts`` settings)."""
    return timedelta(hours=_settings().transfer_confirm_timeout_hours)


def lease_length() -> timedelta:
    """Longer than any pass can live: RQ's job timeout (the horse is killed after it) plus three WeChat
    calls' client timeouts and a margin, so a lease never runs out under a pass that is still working."""
    settings = current_app.extensions["hongli.settings"]
    return timedelta(seconds=settings.queue.job_timeout_seconds + 3 * settings.wechat.timeout_seconds + 30)


def claim_payout(
    payout_id: int, *, now: datetime | None = None, lease: timedelta | None = None
) -> str | None:
    """Take the row's lease with one conditional UPDATE: a token, or None if the row is not due, done, or
    leased to another pass (``WHERE claimed_until IS NULL OR claimed_until < now``)."""
    now = now or utcnow()
    token = str(uuid.uuid4())
    claimed = db.session.execute(
        update(Payout)
        .where(
            Payout.id == payout_id,
            Payout.status.in_(sorted(OPEN_STATUSES)),
            # A duplicate job must not cut a backoff short (FREQ_LIMIT, NOTENOUGH) or poll early.
            Payout.next_attempt_at <= now,
            or_(Payout.claimed_until.is_(None), Payout.claimed_until < now),
        )
        .values(claimed_until=now + (lease or lease_length()), claim_token=token)
        .returning(Payout.id)
        .execution_options(synchronize_session=False)
    ).first()
    return token if claimed is not None else None


def _locked(payout_id: int) -> Payout | None:
    # Operator actions only (app.payouts.operations); passes prove their claim with _claimed instead.
    return db.session.scalar(
        select(Payout)
        .where(Payout.id == payout_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def _claimed(payout_id: int, token: str) -> Payout | None:
    """The row, loaded fresh, if the claim ``token`` is still on it; None otherwise.

    The proof is a conditional UPDATE (``WHERE claim_token = …``), not a read: it holds on every engine,
    and on PostgreSQL it also keeps the row locked until this transaction ends, so a new claim taken
    after our lease ran out waits for our outcome and then sees it.
    """
    if not guarded_update(Payout, payout_id, Payout.claim_token == token, updated_at=utcnow()):
        return None
    return db.session.scalars(
        select(Payout).where(Payout.id == payout_id).execution_options(populate_existing=True)
    ).one()


@dataclass(frozen=True)
class Pass:
    order: PayoutOrder
    action: Action
    cancel: bool  # an accepted transfer bill unconfirmed past confirm_timeout()


def begin_pass(payout_id: int, token: str, *, now: datetime | None = None) -> Pass | None:
    """Under the row lock: what this pass will do. A CREATED row becomes SUBMITTING and its money moves
    withdrawing → payouts in flight — both saved (caller commits) before the first call."""
    now = now or utcnow()
    payout = _claimed(payout_id, token)
    if payout is None or payout.status not in OPEN_STATUSES:
        return None
    assert payout.bill_no is not None
    action: Action
    if payout.status is PayoutStatus.CREATED:
        _move(payout, PayoutStatus.SUBMITTING)
        _ledger(payout, "submit")
        action = "submit"
    elif payout.status is PayoutStatus.ACCEPTED:
        action = "poll"
    else:
        # SUBMITTING (a pass died or was refused "try later") or UNKNOWN: query first, resend the same number.
        action = "resolve"
    _note(payout, f"pass:{action}", bill_no=payout.bill_no)
    cancel = (
        action == "poll"
        and payout.rail is PayoutRail.TRANSFER_BILL
        and payout.wechat_state == "WAIT_USER_CONFIRM"
        and payout.accepted_at is not None
        and now - payout.accepted_at >= confirm_timeout()
    )
    order = PayoutOrder(
        payout.id, payout.bill_no, payout.rail, payout.appid, payout.openid, payout.amount.fen
    )
    return Pass(order, action, cancel)


def run_pass(merchant: Merchant, step: Pass) -> Outcome:
    """The WeChat calls of one pass (no database work): submit, resolve (query, then resend if not found)
    or poll (query, cancelling an overdue unconfirmed transfer)."""
    from app.payouts import rails

    if step.action == "submit":
        return _throttled(merchant, step.order, ()) or replace(
            rails.submit(merchant, step.order), calls=("submit",)
        )
    found = rails.query(merchant, step.order)
    if step.action == "resolve" and found.kind == "not_found":
        return _throttled(merchant, step.order, ("query",)) or replace(
            rails.submit(merchant, step.order), calls=("query", "submit")
        )
    overdue = step.cancel and found.kind == "accepted" and found.state == "WAIT_USER_CONFIRM"
    if step.action == "poll" and overdue:
        cancelled = rails.cancel(merchant, step.order)
        return replace(cancelled if cancelled.kind != "not_found" else found, calls=("query", "cancel"))
    return replace(found, calls=("query",))


RATE_LIMITED = "HONGLI_RATE_LIMITED"  # our own red-packet limiter said wait: nothing was sent


def _throttled(merchant: Merchant, order: PayoutOrder, calls: tuple[str, ...]) -> Outcome | None:
    """Before a ``sendredpack``: a ``retry`` outcome if this merchant's per-second budget is spent."""
    if order.rail is not PayoutRail.CASH_RED_PACKET:
        return None
    wait = take(f"redpack:{merchant.id}", limit=_settings().red_packets_per_second, window_seconds=1)
    if wait is None:
        return None
    return Outcome(
        "retry", code=RATE_LIMITED, message=f"red-packet rate reached; wait {wait:.2f}s", calls=calls
    )


def record_outcome(
    payout_id: int, token: str, outcome: Outcome, *, now: datetime | None = None
) -> Payout | None:
    """Apply ``outcome`` if the claim is still ours (proven by a conditional UPDATE), and release the claim."""
    now = now or utcnow()
    payout = _claimed(payout_id, token)
    if payout is None:
        # Our lease ran out and another pass owns the row: it will learn the same facts by query.
        logger.warning("payout %s: claim lost, outcome %s not applied", payout_id, outcome.kind)
        return db.session.get(Payout, payout_id)
    payout.submit_calls += outcome.calls.count("submit")
    payout.query_calls += outcome.calls.count("query")
    _note(payout, f"wechat:{outcome.kind}", calls=list(outcome.calls), state=outcome.state, code=outcome.code)
    if outcome.wechat_id:
        payout.wechat_id = outcome.wechat_id
    if outcome.state and outcome.kind != "unknown":
        payout.wechat_state = outcome.state
    if outcome.kind == "accepted":
        _move(payout, PayoutStatus.ACCEPTED)
        payout.accepted_at = payout.accepted_at or now
        payout.package_info = outcome.package_info or payout.package_info
        payout.tries = 0
        payout.next_attempt_at = now + POLL_EVERY
    elif outcome.kind == "succeeded":
        _move(payout, PayoutStatus.SUCCEEDED)
        _ledger(payout, "settle")
        payout.finished_at = now
        payout.package_info = None
    elif outcome.kind == "failed" and _may_renumber(payout, outcome):
        old = payout.bill_no
        _move(payout, PayoutStatus.SUBMITTING)
        payout.attempt += 1
        payout.bill_no = bill_number(payout.id, payout.attempt)
        payout.wechat_state = None
        payout.wechat_id = None
        payout.next_attempt_at = now
        _note(payout, "renumbered", old_bill_no=old, bill_no=payout.bill_no, failed_state=outcome.state)
        enqueue_after_commit(PROCESS_JOB, payout.id, queue=QueueName.PAYOUTS)
    elif outcome.kind == "failed":
        _move(payout, PayoutStatus.FAILED)
        payout.failure_code = (outcome.code or outcome.state or "FAILED")[:64]
        payout.failure_reason = FAILURE_TEXT.get(
            outcome.state or "", "WeChat refused the payout; the money is back in your balance."
        )
        _ledger(payout, "return")
        payout.finished_at = now
        payout.package_info = None
    else:
        if outcome.kind == "unknown" and payout.status is PayoutStatus.SUBMITTING:
            _move(payout, PayoutStatus.UNKNOWN)
        if outcome.code in ("NOTENOUGH", "NOT_ENOUGH"):
            # WeChat did nothing: wait for the merchant to top up, then resend the same number.
            flag_for_review(
                merchant_id=payout.merchant_id,
                kind="payout_notenough",
                reason="WeChat Pay balance too low for payouts: top up the merchant account",
                reference=f"merchant:{payout.merchant_id}:notenough",
                details={"payout_id": payout.id, "amount_fen": payout.amount.fen},
            )
            payout.next_attempt_at = now + NOTENOUGH_WAIT
        elif outcome.code == RATE_LIMITED:
            # The next second's budget: shortly, with jitter so a burst does not land in one window again.
            payout.next_attempt_at = now + timedelta(seconds=1 + random.uniform(0, 1))  # noqa: S311
            payout.tries -= 1  # not WeChat's failure: no backoff growth
        elif outcome.code == NO_CREDENTIALS:
            flag_for_review(
                merchant_id=payout.merchant_id,
                kind="payout_unconfigured",
                reason=f"payouts on {payout.rail.value} need WeChat Pay credentials: {outcome.message}",
                reference=f"merchant:{payout.merchant_id}:payout-credentials",
                details={"payout_id": payout.id},
            )
            payout.next_attempt_at = now + NOTENOUGH_WAIT
        else:
            payout.next_attempt_at = now + backoff(payout.tries)
        payout.tries += 1
    payout.claimed_until = None
    payout.claim_token = None
    return payout


def refuse_pass(
    payout_id: int, token: str, error: DomainError, *, now: datetime | None = None
) -> Payout | None:
    """Record that a pass could not begin (``error``, e.g. the money is no longer in withdrawing), back off
    and release the claim: the row says why it is stuck, and ``payouts check`` counts repeats.

    Called in a fresh transaction after the failed one was rolled back.
    """
    now = now or utcnow()
    payout = _claimed(payout_id, token)
    if payout is None:
        return None
    _note(payout, "pass:refused", code=error.code, message=error.message[:200])
    payout.next_attempt_at = now + backoff(payout.tries)
    payout.tries += 1
    payout.claimed_until = None
    payout.claim_token = None
    flag_for_review(
        merchant_id=payout.merchant_id,
        kind="payout_refused",
        reason=f"a payout pass was refused before calling WeChat: {error.code}",
        reference=f"payout:{payout.id}:refused",
        details={"payout_id": payout.id, "code": error.code, "message": error.message[:200]},
    )
    return payout


def _may_renumber(payout: Payout, outcome: Outcome) -> bool:
    """Only a query's word that the old number finally failed, for a failure worth one more try."""
    proven = bool(outcome.calls) and outcome.calls[-1] == "query"
    return proven and (payout.rail, outcome.state) in RENUMBER_ON and payout.attempt < MAX_ATTEMPTS


def release_claim(payout_id: int, token: str) -> None:
    """Give the lease back without an outcome (e.g. nothing to do)."""
    db.session.execute(
        update(Payout)
        .where(Payout.id == payout_id, Payout.claim_token == token)
        .values(claimed_until=None, claim_token=None)
        .execution_options(synchronize_session=False)
    )


def backoff(tries: int) -> timedelta:
    """Exponential from 15 s, capped at an hour, with "equal jitter" so retries do not move in step."""
    delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** min(tries, 20))
    return timedelta(seconds=delay / 2 + random.uniform(0, delay / 2))  # noqa: S311 - not a secret


def _ledger(payout: Payout, step: Literal["submit", "settle", "return"]) -> None:
    """withdrawing → in flight at submit; → settled (+ fee to the merchant) on success; → available on failure."""
    gross = payout.amount + payout.fee
    wallet = consumer_accounts(payout.merchant_id, payout.consumer_id)
    in_flight = platform_account(AccountKind.PAYOUTS_IN_FLIGHT, payout.merchant_id)
    if step == "submit":
        reason, lines = EntryReason.PAYOUT_SUBMIT, [(wallet.withdrawing, -gross), (in_flight, gross)]
        memo = f"withdrawal {payout.bill_no} sent to WeChat"
    elif step == "settle":
        settled = platform_account(AccountKind.PAYOUTS_SETTLED, payout.merchant_id)
        fee_account = merchant_accounts(payout.merchant_id).rebate
        reason = EntryReason.PAYOUT_SETTLE
        lines = [(in_flight, -gross), (settled, payout.amount), (fee_account, payout.fee)]
        memo = f"withdrawal {payout.bill_no} received in WeChat change"
    else:
        reason, lines = EntryReason.PAYOUT_RETURN, [(in_flight, -gross), (wallet.available, gross)]
        memo = f"withdrawal {payout.bill_no} returned: {payout.failure_code or 'failed'}"
    post_entry(
        key=f"payout:{payout.id}:{step}",
        reason=reason,
        cause_type="payout",
        cause_id=str(payout.id),
        lines=lines,
        merchant_id=payout.merchant_id,
        memo=memo[:255],
    )


def due_payout_ids(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Open payouts whose next pass is due and whose lease (if any) has run out: the outbox."""
    now = now or utcnow()
    return list(
        db.session.scalars(
            select(Payout.id)
            .where(
                Payout.status.in_(sorted(OPEN_STATUSES)),
                Payout.next_attempt_at <= now,
                or_(Payout.claimed_until.is_(None), Payout.claimed_until < now),
            )
            .order_by(Payout.next_attempt_at)
            .limit(limit)
        )
    )


def enqueue_due_payouts(*, now: datetime | None = None) -> int:
    """Queue a pass for every due payout, after the caller commits."""
    ids = due_payout_ids(now=now)
    for payout_id in ids:
        enqueue_after_commit(PROCESS_JOB, payout_id, queue=QueueName.PAYOUTS)
    return len(ids)


def get_payout(payout_id: int) -> Payout:
    payout = db.session.get(Payout, payout_id)
    if payout is None:
        raise NotFound("no such payout")
    return payout


def list_payouts(
    *, merchant_id: int | None, statuses: list[PayoutStatus] | None = None, limit: int = 100
) -> list[Payout]:
    """Payouts newest first, optionally of one merchant and some states (e.g. stuck ``unknown`` ones)."""
    query = select(Payout)
    if merchant_id is not None:
        query = query.where(Payout.merchant_id == merchant_id)
    if statuses:
        query = query.where(Payout.status.in_(sorted(statuses)))
    return list(db.session.scalars(query.order_by(Payout.id.desc()).limit(limit)))


def on_transfer_bill_finished(*, merchant_id: int, resource: dict[str, Any]) -> bool:
    """A verified ``MCHTRANSFER.BILL.FINISHED`` (§6.1): make the payout's next pass due now and queue it.

    The pass learns the final state by query under the lease, so the notification and the poller never
    both write the row; a repeat notification is a repeat pass that finds nothing left to do. False if the
    bill is not one of ours.
    """
    payout_id = db.session.scalar(
        select(Payout.id).where(
            Payout.merchant_id == merchant_id,
            Payout.rail == PayoutRail.TRANSFER_BILL,
            Payout.bill_no == str(resource.get("out_bill_no", "")),
        )
    )
    if payout_id is None:
        return False
    db.session.execute(
        update(Payout)
        .where(Payout.id == payout_id, Payout.status.in_(sorted(OPEN_STATUSES)))
        .values(next_attempt_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    enqueue_after_commit(PROCESS_JOB, payout_id, queue=QueueName.PAYOUTS)
    return True


def make_due(payout_id: int, *, now: datetime | None = None) -> None:
    """Bring an open payout's next pass forward to now (its lease, if any, still keeps others out)."""
    db.session.execute(
        update(Payout)
        .where(Payout.id == payout_id, Payout.status.in_(sorted(OPEN_STATUSES)))
        .values(next_attempt_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
