"""What finance does with payouts that did not finish on their own: see the stuck ones, re-queue one, or mark
one resolved after checking WeChat's records — and the deadline by which every uncertain payout is queried.

An *uncertain* payout is ``submitting`` or ``unknown``: a call may have reached WeChat. It is *stuck* once it
has been uncertain longer than ``payouts.unknown_query_deadline_minutes``, and *overdue* when, on top of that,
no query of its bill number is on record within the deadline (``flask --app wsgi payouts check`` fails then).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select

from app.audit.service import Actor, record_audit
from app.core.db import utcnow
from app.core.errors import Conflict
from app.extensions import db
from app.merchants.models import Merchant
from app.payouts import rails
from app.payouts.models import OPEN_STATUSES, Payout, PayoutStatus
from app.payouts.rails import PayoutOrder
from app.payouts.service import (
    PROCESS_JOB,
    RATE_LIMITED,
    _ledger,
    _locked,
    _move,
    _note,
    _settings,
    lease_length,
)
from app.queue import QueueName, enqueue_after_commit

UNCERTAIN = frozenset({PayoutStatus.SUBMITTING, PayoutStatus.UNKNOWN})
# Events after which a call may have reached WeChat under the current number.
_SENT_EVENTS = frozenset({"pass:submit", "renumbered"})


def query_deadline() -> timedelta:
    return timedelta(minutes=_settings().unknown_query_deadline_minutes)


def _at(item: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(item["at"]))


def last_query_at(payout: Payout) -> datetime | None:
    """When WeChat was last asked about this payout's bill (a pass or an operator's query), from its history."""
    times = [_at(h) for h in payout.history if "query" in (h.get("calls") or ())]
    return max(times) if times else None


def uncertain_since(payout: Payout) -> datetime:
    """When the current bill number was first sent (or could have been)."""
    times = [_at(h) for h in payout.history if h.get("event") in _SENT_EVENTS]
    return max(times) if times else payout.created_at


def query_age(payout: Payout, now: datetime) -> timedelta:
    """How long this uncertain payout has gone without a query of its bill number."""
    return now - max(filter(None, (last_query_at(payout), uncertain_since(payout))))


def uncertain_payouts(*, merchant_id: int | None = None) -> list[Payout]:
    query = select(Payout).where(Payout.status.in_(sorted(UNCERTAIN)))
    if merchant_id is not None:
        query = query.where(Payout.merchant_id == merchant_id)
    return list(db.session.scalars(query.order_by(Payout.id)))


def stuck_payouts(*, merchant_id: int | None = None, now: datetime | None = None) -> list[Payout]:
    """Submitting/unknown for longer than the query deadline (queried or not): finance should look."""
    now = now or utcnow()
    deadline = query_deadline()
    return [p for p in uncertain_payouts(merchant_id=merchant_id) if now - uncertain_since(p) > deadline]


def overdue_payouts(*, now: datetime | None = None) -> list[Payout]:
    """Uncertain payouts with no query on record within the deadline: the invariant ``payouts check`` guards."""
    now = now or utcnow()
    deadline = query_deadline()
    return [p for p in uncertain_payouts() if query_age(p, now) > deadline]


def payouts_to_query(*, now: datetime | None = None) -> list[int]:
    """Uncertain payouts not queried for half the deadline: the sweep queries them well before it passes."""
    now = now or utcnow()
    half = query_deadline() / 2
    return [p.id for p in uncertain_payouts() if query_age(p, now) >= half]


# ---------------------------------------------------------------- the same failure, pass after pass

REPEATED_PASSES = 3  # `payouts check` flags an open payout failing the same way this many passes running
# Outcomes that are progress, not failure: they break a run of failures.
_PROGRESS = frozenset({"accepted", "succeeded", "failed"})
# A pass refused before it called WeChat, noted with the refusal's code (e.g. the ledger's Overdraft,
# "insufficient_funds") by app.payouts.service.refuse_pass.
REFUSED_EVENT = "pass:refused"
NO_OUTCOME = "NO_OUTCOME"  # a pass began and the next one began without an outcome of the first on record


@dataclass(frozen=True)
class RepeatedFailure:
    payout: Payout
    code: str
    passes: int


def pass_failures(history: list[dict[str, object]], *, running: bool = False) -> list[str | None]:
    """One entry per pass on record, oldest first: its failure code (WeChat's error code, else its state,
    else the outcome kind), or None for a pass that made progress. A pass that began and left no outcome
    is ``NO_OUTCOME`` — unless it is the last and ``running`` (it holds the lease now): then it is left out.

    Operators' queries and our own red-packet rate limit are not passes that failed, and are skipped.
    """
    passes: list[str | None] = []
    open_pass = False  # a "pass:*" noted, its outcome not yet
    for item in history:
        event = str(item.get("event", ""))
        if item.get("by") == "operator" or event.startswith("operator:"):
            continue
        if event == REFUSED_EVENT:
            passes += [NO_OUTCOME] if open_pass else []
            passes.append(str(item.get("code") or "REFUSED"))
            open_pass = False
        elif event.startswith("pass:"):
            passes += [NO_OUTCOME] if open_pass else []
            open_pass = True
        elif event.startswith("wechat:"):
            kind = event.removeprefix("wechat:")
            code = item.get("code")
            if code != RATE_LIMITED:  # nothing was asked of WeChat: neither a failure nor progress
                passes.append(None if kind in _PROGRESS else str(code or item.get("state") or kind.upper()))
            open_pass = False
    if open_pass and not running:
        passes.append(NO_OUTCOME)
    return passes


def repeated_failure(
    payout: Payout, passes: int = REPEATED_PASSES, *, now: datetime | None = None
) -> RepeatedFailure | None:
    """The failure the payout's latest passes share, if at least ``passes`` of them in a row share one."""
    now = now or utcnow()
    running = payout.claimed_until is not None and payout.claimed_until > now
    outcomes = pass_failures(payout.history, running=running)
    if not outcomes or outcomes[-1] is None:
        return None
    last = outcomes[-1]
    run = 0
    for code in reversed(outcomes):
        if code != last:
            break
        run += 1
    return RepeatedFailure(payout, last, run) if run >= passes else None


def repeated_failures(*, passes: int = REPEATED_PASSES, now: datetime | None = None) -> list[RepeatedFailure]:
    """Open payouts whose last ``passes`` (or more) passes failed with the same code: retrying alone
    will not finish them (a merchant balance to top up, a credential to fix, a refusal in our own ledger)."""
    now = now or utcnow()
    query = select(Payout).where(Payout.status.in_(sorted(OPEN_STATUSES))).order_by(Payout.id)
    found = (repeated_failure(p, passes, now=now) for p in db.session.scalars(query))
    return [f for f in found if f is not None]


def never_begun(*, now: datetime | None = None, passes: int = REPEATED_PASSES) -> list[Payout]:
    """``created`` payouts claimed by a pass whose lease ran out with nothing on record, ``passes`` leases
    after creation: each pass failed before it could record anything (an exception before its first commit
    other than a refusal, which is noted ``pass:refused``), so no count is known."""
    now = now or utcnow()
    return list(
        db.session.scalars(
            select(Payout)
            .where(
                Payout.status == PayoutStatus.CREATED,
                Payout.claim_token.is_not(None),
                Payout.claimed_until < now,
                Payout.created_at < now - passes * lease_length(),
            )
            .order_by(Payout.id)
        )
    )


def retry_payout(*, merchant_id: int, payout_id: int, actor: Actor) -> Payout:
    """Re-queue an unfinished payout now. An uncertain one is first resolved by a query of its *same* number
    (the pass does that); a new number only ever follows WeChat's proof that the old one failed. Audited."""
    payout = _locked(payout_id)
    if payout is None or payout.merchant_id != merchant_id:
        from app.core.errors import NotFound

        raise NotFound("no such payout")
    if payout.status not in OPEN_STATUSES:
        # A failed payout's money is back in the consumer's available balance: they withdraw it again.
        raise Conflict(
            f"payout is {payout.status.value}: nothing to retry",
            details={"status": payout.status.value},
        )
    before = {"status": payout.status.value, "next_attempt_at": payout.next_attempt_at.isoformat()}
    payout.next_attempt_at = utcnow()
    payout.tries = 0
    _note(payout, "operator:retry", actor=actor.id, bill_no=payout.bill_no)
    enqueue_after_commit(PROCESS_JOB, payout.id, queue=QueueName.PAYOUTS)
    record_audit(
        actor=actor,
        action="payout.retry",
        target_type="payout",
        target_id=payout.id,
        merchant_id=merchant_id,
        before=before,
        after={"status": payout.status.value, "next_attempt_at": payout.next_attempt_at.isoformat()},
    )
    return payout


# What WeChat's answer to a query allows a person to declare. "unknown"/"retry" (WeChat could not say)
# contradicts nothing; an in-progress bill contradicts both; ``not_found`` means nothing was ever paid.
_AGREES: dict[str, frozenset[str]] = {
    "succeeded": frozenset({"succeeded", "unknown", "retry"}),
    "failed": frozenset({"failed", "not_found", "unknown", "retry"}),
}


@dataclass(frozen=True)
class Resolution:
    payout: Payout
    wechat_kind: str
    wechat_state: str | None


def resolve_payout(
    *,
    merchant_id: int,
    payout_id: int,
    outcome: Literal["succeeded", "failed"],
    reason: str,
    actor: Actor,
) -> Resolution:
    """Mark a sent, unfinished payout finished after a person checked WeChat's records; the ledger follows
    (settled, or back to available). Refused (409) while a pass holds the lease or when WeChat, queried with
    the same bill number now, says otherwise. Audited."""
    payout = _locked(payout_id)
    if payout is None or payout.merchant_id != merchant_id:
        from app.core.errors import NotFound

        raise NotFound("no such payout")
    if payout.status not in (UNCERTAIN | {PayoutStatus.ACCEPTED}):
        raise Conflict(
            f"payout is {payout.status.value}: only a sent, unfinished payout can be resolved",
            details={"status": payout.status.value},
        )
    now = utcnow()
    if payout.claimed_until is not None and payout.claimed_until > now:
        raise Conflict("a payout pass is running for this payout; try again shortly", details={})
    merchant = db.session.get(Merchant, payout.merchant_id)
    assert merchant is not None and payout.bill_no is not None
    # WeChat's word under the row lock: a pass cannot claim the row while we ask and apply.
    order = PayoutOrder(
        payout.id, payout.bill_no, payout.rail, payout.appid, payout.openid, payout.amount.fen
    )
    found = rails.query(merchant, order)
    payout.query_calls += 1
    _note(payout, f"wechat:{found.kind}", calls=["query"], state=found.state, code=found.code, by="operator")
    if found.kind not in _AGREES[outcome]:
        raise Conflict(
            f"WeChat's record of {payout.bill_no} says {found.state or found.kind}: not {outcome}",
            details={"wechat": found.kind, "wechat_state": found.state},
        )
    before = {"status": payout.status.value, "wechat_state": payout.wechat_state}
    if found.state and found.kind not in ("unknown", "retry", "not_found"):
        payout.wechat_state = found.state
    if outcome == "succeeded":
        _move(payout, PayoutStatus.SUCCEEDED)
        _ledger(payout, "settle")
    else:
        _move(payout, PayoutStatus.FAILED)
        payout.failure_code = "RESOLVED_FAILED"
        payout.failure_reason = "The payout did not go through; the money is back in your balance."
        _ledger(payout, "return")
    payout.finished_at = now
    payout.package_info = None
    payout.claimed_until = None
    payout.claim_token = None
    _note(payout, "operator:resolved", outcome=outcome, reason=reason, actor=actor.id)
    record_audit(
        actor=actor,
        action="payout.resolve",
        target_type="payout",
        target_id=payout.id,
        merchant_id=merchant_id,
        before=before,
        after={"status": payout.status.value, "reason": reason, "wechat": found.kind},
    )
    return Resolution(payout, found.kind, found.state)
