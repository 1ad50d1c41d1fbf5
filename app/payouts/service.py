"""The payout state machine: claim with a lease, save the state before every WeChat call, apply what
WeChat said under the row lock, move the ledger with keys derived from the payout id.

A pass (see ``jobs.payouts.process_payout``) is two transactions with the WeChat calls between them, none
open during a call: :func:`start_pass` takes the lease and, for a CREATED row, moves it to SUBMITTING in the
same conditional UPDATE (bill number fixed, the money moved to in flight) — all committed before the first
call; then :func:`record_outcome`. Only the holder of an unexpired claim may call WeChat for a row, so an
orphaned work horse and a retry never submit the same payout at once; the RQ job id plays no part.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from importlib import import_module
from typing import Any, ClassVar, Literal, cast

from flask import current_app
from sqlalchemy import Label, Table, Update, bindparam, func, literal, or_, select, update

from app.core.db import utcnow
from app.core.errors import Conflict, DomainError, NotFound
from app.core.money import Money
from app.core.ratelimit import take
from app.extensions import db
from app.gateway.log import PendingLog
from app.ledger.accounts import consumer_accounts, merchant_accounts, natural_key_of, platform_account
from app.ledger.models import AccountKind, EntryReason, LedgerAccount
from app.ledger.service import Account, AccountRef, Batch, Draft, post_entry
from app.merchants.models import Merchant, PayoutRail
from app.payouts.capabilities import cash_red_packets_off, means_product_off, record_product_off
from app.payouts.models import OPEN_STATUSES, PAYOUT_TRANSITIONS, Payout, PayoutProduct, PayoutStatus
from app.payouts.rails import NO_CREDENTIALS, Outcome, PayoutMerchant, PayoutOrder, payout_merchant
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
    "PRODUCT_OFF": "The merchant's WeChat Pay account cannot send cash red packets; the money is back in your "
    "balance.",
}


# A proven-failed number may be replaced (§5.5: red-packet FAILED — "only now is a new mch_billno safe");
# other final failures (unopened REFUND, a refused or cancelled transfer) return the money instead.
RENUMBER_ON = frozenset({(PayoutRail.CASH_RED_PACKET, "FAILED")})
MAX_ATTEMPTS = 2


def bill_number(payout_id: int, attempt: int = 1) -> str:
    """``HLP`` + 10 digits (+ ``N<attempt>`` after a proven failure): [0-9A-Za-z], ≤ 28 characters for
    ``mch_billno`` (§5.1) and ≤ 32 for ``out_bill_no`` (§6.1)."""
    return f"HLP{payout_id:010d}" + (f"N{attempt}" if attempt > 1 else "")


def _note(payout: Payout | PayoutRow, event: str, *, now: datetime | None = None, **extra: object) -> None:
    # Reassigned, not appended, so the JSON column is seen as changed.
    payout.history = [
        *payout.history,
        {"at": (now or utcnow()).isoformat(), "event": event, "status": payout.status.value, **extra},
    ]


def _move(payout: Payout | PayoutRow, target: PayoutStatus) -> None:
    if target is payout.status:
        return
    if target not in PAYOUT_TRANSITIONS[payout.status]:
        raise Conflict(
            f"payout {payout.id} cannot go from {payout.status.value} to {target.value}",
            details={"status": payout.status.value},
        )
    payout.status = target


def recipient(
    merchant: Merchant, consumer_id: int, appid: str | None = None, *, rail: PayoutRail | None = None
) -> tuple[str, str]:
    """(appid, openid) the merchant's rail pays.

    A red packet needs the official-account openid (§5.1). A transfer bill may name either of the
    merchant's apps (§6.1): the one the consumer asked from (``appid``) when they have an openid there, so
    they confirm it where they are — a follower on the official account's H5 pages, a buyer in the
    mini-program — else the mini-program, else the official account.
    """
    from app.consumers.models import WeChatIdentity

    rail = rail or merchant.payout_rail
    if rail is PayoutRail.CASH_RED_PACKET:
        candidates = [merchant.oa_appid]
    else:
        preferred = appid if appid in (merchant.mp_appid, merchant.oa_appid) else None
        candidates = [preferred, merchant.mp_appid, merchant.oa_appid]
    apps = list(dict.fromkeys(app for app in candidates if app))
    rows = db.session.execute(
        select(WeChatIdentity.appid, WeChatIdentity.openid).where(
            WeChatIdentity.consumer_id == consumer_id, WeChatIdentity.appid.in_(apps)
        )
    ).all()
    openids = {row.appid: row.openid for row in rows}
    for app in apps:
        if app in openids:
            return app, openids[app]
    raise Conflict(
        "no WeChat identity to pay this consumer on the merchant's payout rail",
        details={"rail": rail.value},
    )


def create_payout(
    *,
    merchant: Merchant,
    consumer_id: int,
    source_type: str,
    source_id: int,
    amount: Money,
    fee: Money,
    appid: str | None = None,
    group_size: int | None = None,
) -> Payout:
    """Save a payout (bill number fixed now, before any call) and queue it after commit.

    The money (``amount + fee``) must already be in the consumer's withdrawing bucket. ``appid``: the app
    the consumer asked from (see :func:`recipient`). The rail is the merchant's, except that cash red
    packets WeChat refused for this account go by transfer bill; ``group_size``: one fission red packet of
    that many shares (§5.3) — only while the account has cash red packets (``Conflict`` otherwise).
    """
    rail = merchant.payout_rail
    if group_size is not None:
        rail = PayoutRail.CASH_RED_PACKET
    if rail is PayoutRail.CASH_RED_PACKET and cash_red_packets_off(merchant.id):
        if group_size is not None:
            raise Conflict(
                "this merchant's WeChat Pay account has no cash red packets",
                details={"product": PayoutProduct.CASH_RED_PACKET.value},
            )
        rail = PayoutRail.TRANSFER_BILL
    appid, openid = recipient(merchant, consumer_id, appid, rail=rail)
    payout = Payout(
        merchant_id=merchant.id,
        consumer_id=consumer_id,
        source_type=source_type,
        source_id=source_id,
        rail=rail,
        group_size=group_size,
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
    _note(
        payout,
        "created",
        bill_no=payout.bill_no,
        rail=payout.rail.value,
        amount_fen=amount.fen,
        **({"group_size": group_size} if group_size is not None else {}),  # type: ignore[arg-type]
    )
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


_payouts = cast(Table, Payout.__table__)
# The merchant row's last update, read in the statement that claims a payout: the per-process copy of
# the merchant (app.payouts.rails.payout_merchant) is used only while it is as fresh as the row.
_MERCHANT_UPDATED_AT = (
    select(Merchant.updated_at)
    .where(Merchant.id == _payouts.c.merchant_id)
    .correlate(_payouts)
    .scalar_subquery()
    .label("merchant_updated_at")
)
_accounts = cast(Table, LedgerAccount.__table__)


def _account_id(kind: AccountKind, owner_id: Any) -> Label[int]:
    """The id of the payout's ledger account of ``kind`` (NULL until it exists), read with the claim."""
    natural_key = natural_key_of(kind, owner_id, _payouts.c.merchant_id)
    return (
        select(_accounts.c.id)
        .where(_accounts.c.natural_key == natural_key)
        .correlate(_payouts)
        .scalar_subquery()
        .label(f"{kind.value}_id")
    )


# What the submit move touches, read with the claim: no look-up of either account on the way.
_SUBMIT_ACCOUNTS = (
    _account_id(AccountKind.CONSUMER_WITHDRAWING, _payouts.c.consumer_id),
    _account_id(AccountKind.PAYOUTS_IN_FLIGHT, literal("-")),  # a platform account: no owner
)


def _claim_statement(statuses: frozenset[PayoutStatus], move_to: PayoutStatus | None = None) -> Update:
    """The lease, as one conditional UPDATE built once: ``WHERE status IN statuses AND next_attempt_at <= now
    AND (claimed_until IS NULL OR claimed_until < now)``, moving the row to ``move_to`` in the same write;
    it returns what a pass needs of the row (not the row again in another statement)."""
    values: dict[str, Any] = {
        "claimed_until": bindparam("claimed_until"),
        "claim_token": bindparam("token"),
        "updated_at": bindparam("now"),
    }
    if move_to is not None:
        values["status"] = move_to
    return (
        update(_payouts)
        .where(
            _payouts.c.id == bindparam("payout_id"),
            _payouts.c.status.in_(sorted(statuses)),
            # A duplicate job must not cut a backoff short (FREQ_LIMIT, NOTENOUGH) or poll early.
            _payouts.c.next_attempt_at <= bindparam("now"),
            or_(_payouts.c.claimed_until.is_(None), _payouts.c.claimed_until < bindparam("now")),
        )
        .values(values)
        .returning(
            *(_payouts.c[name] for name in PayoutRow.COLUMNS),
            _MERCHANT_UPDATED_AT,
            *(_SUBMIT_ACCOUNTS if move_to is PayoutStatus.SUBMITTING else ()),
        )
    )


@dataclass(eq=False)
class PayoutRow:
    """The columns of a payout a pass reads and writes, as its claim returned them: the pass decides on
    this copy and writes it back with one conditional UPDATE (:func:`_write`), never reading the row again
    unless something else wrote to it meanwhile."""

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "id",
        "merchant_id",
        "consumer_id",
        "rail",
        "appid",
        "openid",
        "amount",
        "fee",
        "source_type",
        "group_size",
        "status",
        "bill_no",
        "attempt",
        "wechat_state",
        "wechat_id",
        "package_info",
        "failure_code",
        "failure_reason",
        "submit_calls",
        "query_calls",
        "tries",
        "next_attempt_at",
        "claimed_until",
        "claim_token",
        "accepted_at",
        "finished_at",
        "history",
    )
    # What a pass may change (and so writes back).
    WRITTEN: ClassVar[tuple[str, ...]] = COLUMNS[COLUMNS.index("status") :]

    id: int
    merchant_id: int
    consumer_id: int
    rail: PayoutRail
    appid: str
    openid: str
    amount: Money
    fee: Money
    source_type: str
    group_size: int | None
    status: PayoutStatus
    bill_no: str | None
    attempt: int
    wechat_state: str | None
    wechat_id: str | None
    package_info: str | None
    failure_code: str | None
    failure_reason: str | None
    submit_calls: int
    query_calls: int
    tries: int
    next_attempt_at: datetime
    claimed_until: datetime | None
    claim_token: str | None
    accepted_at: datetime | None
    finished_at: datetime | None
    history: list[dict[str, Any]]
    # Read with the claim, not columns of the row:
    merchant_updated_at: datetime | None = None
    withdrawing_id: int | None = None  # the submit claim only: its accounts (None until one exists)
    in_flight_id: int | None = None


_CLAIM_ANY = _claim_statement(OPEN_STATUSES)
_CLAIM_SENT = _claim_statement(OPEN_STATUSES - {PayoutStatus.CREATED})
# CREATED → SUBMITTING with the lease, in one write: only one pass can ever make this move.
_CLAIM_TO_SUBMIT = _claim_statement(frozenset({PayoutStatus.CREATED}), PayoutStatus.SUBMITTING)
_SET_HISTORY = (
    update(_payouts)
    .where(_payouts.c.id == bindparam("payout_id"), _payouts.c.claim_token == bindparam("token"))
    .values(history=bindparam("history", type_=_payouts.c.history.type))
)
# The row again, if the claim is still ours (the proof: a conditional UPDATE; on PostgreSQL it also keeps
# the row locked until the transaction ends, so a claim taken after our lease ran out waits for our outcome).
_RECLAIM = (
    update(_payouts)
    .where(_payouts.c.id == bindparam("payout_id"), _payouts.c.claim_token == bindparam("token"))
    .values(updated_at=bindparam("now"))
    .returning(*(_payouts.c[name] for name in PayoutRow.COLUMNS))
)
_WRITE = (
    update(_payouts)
    .where(_payouts.c.id == bindparam("payout_id"), _payouts.c.claim_token == bindparam("token"))
    .values(
        {name: bindparam(name, type_=_payouts.c[name].type) for name in (*PayoutRow.WRITTEN, "updated_at")}
    )
)
# History is only ever appended to: its length says whether anything noted on the row since we read it
# (an operator's retry, which also resets the backoff), with the same SQL on PostgreSQL and SQLite.
_WRITE_IF_UNCHANGED = _WRITE.where(func.json_array_length(_payouts.c.history) == bindparam("history_length"))


def _take_lease(
    statement: Update, payout_id: int, token: str, now: datetime, lease: timedelta | None
) -> PayoutRow | None:
    """Run a claim ``statement``: the row as claimed, or None if it is not due, not in the statement's
    states, or leased to another pass."""
    row = db.session.execute(
        statement,
        {
            "payout_id": payout_id,
            "token": token,
            "now": now,
            "claimed_until": now + (lease or lease_length()),
        },
    ).first()
    return PayoutRow(*row) if row is not None else None


def claim_payout(
    payout_id: int, *, now: datetime | None = None, lease: timedelta | None = None
) -> str | None:
    """Take the row's lease and nothing else: a token, or None if the row is not due, done, or leased to
    another pass."""
    token = str(uuid.uuid4())
    return token if _take_lease(_CLAIM_ANY, payout_id, token, now or utcnow(), lease) else None


def _locked(payout_id: int) -> Payout | None:
    # Operator actions only (app.payouts.operations); passes prove their claim with conditional UPDATEs instead.
    return db.session.scalar(
        select(Payout)
        .where(Payout.id == payout_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def _reclaimed(payout_id: int, token: str) -> PayoutRow | None:
    """The row as stored now, if the claim ``token`` is still on it; None otherwise."""
    row = db.session.execute(_RECLAIM, {"payout_id": payout_id, "token": token, "now": utcnow()}).first()
    return PayoutRow(*row) if row is not None else None


def _write(row: PayoutRow, token: str, *, history_length: int | None = None) -> bool:
    """Write ``row`` back while the claim ``token`` is on it (and, given ``history_length``, nothing was
    noted on it since); True if it was written."""
    values = {name: getattr(row, name) for name in PayoutRow.WRITTEN}
    params = {**values, "updated_at": utcnow(), "payout_id": row.id, "token": token}
    if history_length is None:
        result = db.session.execute(_WRITE, params)
    else:
        result = db.session.execute(_WRITE_IF_UNCHANGED, {**params, "history_length": history_length})
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Pass:
    """A started pass: what it asks WeChat, its claim, and its merchant. WeChat's answers are held in
    ``log`` until :func:`record_outcome` writes them, so no transaction is open between two calls."""

    order: PayoutOrder
    action: Action
    cancel: bool  # an accepted transfer bill unconfirmed past confirm_timeout()
    token: str
    merchant: PayoutMerchant
    log: PendingLog
    row: PayoutRow  # as this pass left it in the database (``pass:*`` noted)


def start_pass(payout_id: int, *, now: datetime | None = None, lease: timedelta | None = None) -> Pass | None:
    """Claim the row and decide what this pass will do; None if it is not due, finished or leased.

    A CREATED row is claimed and moved to SUBMITTING by one conditional UPDATE (``WHERE status = 'created'``
    and the lease is free), and its money moves withdrawing → payouts in flight: all saved (caller commits)
    before the first call. Raises what the ledger raises (e.g. ``Overdraft``); the caller rolls back.
    """
    now = now or utcnow()
    token = str(uuid.uuid4())
    action: Action = "submit"
    claim = _take_lease(_CLAIM_TO_SUBMIT, payout_id, token, now, lease)
    if claim is None:
        # Sent before (SUBMITTING after a pass died or was told "try later", UNKNOWN) or ACCEPTED.
        claim = _take_lease(_CLAIM_SENT, payout_id, token, now, lease)
        if claim is None:
            return None
        # SUBMITTING/UNKNOWN are resolved by a query first, then a resend of the same number.
        action = "poll" if claim.status is PayoutStatus.ACCEPTED else "resolve"
    assert claim.bill_no is not None
    # Noted before any call: a pass that dies from here on shows as begun without an outcome.
    _note(claim, f"pass:{action}", now=now, bill_no=claim.bill_no)
    db.session.execute(_SET_HISTORY, {"payout_id": payout_id, "token": token, "history": claim.history})
    if action == "submit":
        _submit_move(claim)
    cancel = (
        action == "poll"
        and claim.rail is PayoutRail.TRANSFER_BILL
        and claim.wechat_state == "WAIT_USER_CONFIRM"
        and claim.accepted_at is not None
        and now - claim.accepted_at >= confirm_timeout()
    )
    order = PayoutOrder(
        claim.id, claim.bill_no, claim.rail, claim.appid, claim.openid, claim.amount.fen, claim.group_size
    )
    merchant = payout_merchant(claim.merchant_id, claim.merchant_updated_at)
    return Pass(order, action, cancel, token, merchant, PendingLog(merchant.id), claim)


def run_pass(step: Pass) -> Outcome:
    """The WeChat calls of one pass (no database work; the exchanges wait in ``step.log``): submit, resolve
    (query, then resend if not found) or poll (query, cancelling an overdue unconfirmed transfer)."""
    from app.payouts import rails

    merchant, order, log = step.merchant, step.order, step.log
    if step.action == "submit":
        return _throttled(merchant, order, ()) or replace(
            rails.submit(merchant, order, log=log), calls=("submit",)
        )
    found = rails.query(merchant, order, log=log)
    if step.action == "resolve" and found.kind == "not_found":
        return _throttled(merchant, order, ("query",)) or replace(
            rails.submit(merchant, order, log=log), calls=("query", "submit")
        )
    overdue = step.cancel and found.kind == "accepted" and found.state == "WAIT_USER_CONFIRM"
    if step.action == "poll" and overdue:
        cancelled = rails.cancel(merchant, order, log=log)
        return replace(cancelled if cancelled.kind != "not_found" else found, calls=("query", "cancel"))
    return replace(found, calls=("query",))


RATE_LIMITED = "HONGLI_RATE_LIMITED"  # our own red-packet limiter said wait: nothing was sent


def _throttled(merchant: PayoutMerchant, order: PayoutOrder, calls: tuple[str, ...]) -> Outcome | None:
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
    payout_id: int,
    token: str,
    outcome: Outcome,
    *,
    now: datetime | None = None,
    log: PendingLog | None = None,
    seen: PayoutRow | None = None,
) -> PayoutRow | None:
    """Apply ``outcome`` if the claim is still ours (proven by a conditional UPDATE), and release the claim;
    None if it is not ours any more. The pass's exchanges with WeChat (``log``) are written either way.

    ``seen``: the row as the pass left it; the outcome is applied to it and written in one UPDATE unless
    something was noted on the row since, in which case the row is read again (still under the claim).
    """
    now = now or utcnow()
    if log is not None:
        log.write()
    if seen is not None:
        row = replace(seen)
        effects = _apply(row, outcome, now)
        if _write(row, token, history_length=len(seen.history)):
            for effect in effects:
                effect()
            return row
    fresh = _reclaimed(payout_id, token)
    if fresh is None:
        # Our lease ran out and another pass owns the row: it will learn the same facts by query.
        logger.warning("payout %s: claim lost, outcome %s not applied", payout_id, outcome.kind)
        return None
    effects = _apply(fresh, outcome, now)
    _write(fresh, token)  # the row is ours: _reclaimed proved the claim in this transaction
    for effect in effects:
        effect()
    return fresh


Effect = Callable[[], object]


def _apply(payout: PayoutRow, outcome: Outcome, now: datetime) -> list[Effect]:
    """Change ``payout`` as ``outcome`` says and release its claim; what else must be written (ledger
    entries, review items, a queued pass) is returned, to be done once the row is written."""
    effects: list[Effect] = []
    payout.submit_calls += outcome.calls.count("submit")
    payout.query_calls += outcome.calls.count("query")
    _note(
        payout,
        f"wechat:{outcome.kind}",
        now=now,
        calls=list(outcome.calls),
        state=outcome.state,
        code=outcome.code,
    )
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
        effects.append(partial(_ledger, payout, "settle"))
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
        _note(
            payout, "renumbered", now=now, old_bill_no=old, bill_no=payout.bill_no, failed_state=outcome.state
        )
        effects.append(partial(enqueue_after_commit, PROCESS_JOB, payout.id, queue=QueueName.PAYOUTS))
    elif outcome.kind == "failed":
        product_off = payout.rail is PayoutRail.CASH_RED_PACKET and means_product_off(
            outcome.code, outcome.message
        )
        _move(payout, PayoutStatus.FAILED)
        payout.failure_code = (outcome.code or outcome.state or "FAILED")[:64]
        payout.failure_reason = FAILURE_TEXT.get(
            "PRODUCT_OFF" if product_off else outcome.state or "",
            "WeChat refused the payout; the money is back in your balance.",
        )
        effects.append(partial(_ledger, payout, "return"))
        if product_off:
            # The account has no cash red packets (nothing was sent): off for the merchant from now on, and
            # a source that must still be paid pays on the default rail (once; its own guard decides).
            effects.append(
                partial(record_product_off, payout.merchant_id, code=outcome.code, message=outcome.message)
            )
            if payout.source_type in PRODUCT_OFF_FALLBACKS:
                effects.append(partial(_fall_back, payout))
        payout.finished_at = now
        payout.package_info = None
    else:
        if outcome.kind == "unknown" and payout.status is PayoutStatus.SUBMITTING:
            _move(payout, PayoutStatus.UNKNOWN)
        if outcome.code in ("NOTENOUGH", "NOT_ENOUGH"):
            # WeChat did nothing: wait for the merchant to top up, then resend the same number.
            effects.append(
                partial(
                    flag_for_review,
                    merchant_id=payout.merchant_id,
                    kind="payout_notenough",
                    reason="WeChat Pay balance too low for payouts: top up the merchant account",
                    reference=f"merchant:{payout.merchant_id}:notenough",
                    details={"payout_id": payout.id, "amount_fen": payout.amount.fen},
                )
            )
            payout.next_attempt_at = now + NOTENOUGH_WAIT
        elif outcome.code == RATE_LIMITED:
            # The next second's budget: shortly, with jitter so a burst does not land in one window again.
            payout.next_attempt_at = now + timedelta(seconds=1 + random.uniform(0, 1))  # noqa: S311
            payout.tries -= 1  # not WeChat's failure: no backoff growth
        elif outcome.code == NO_CREDENTIALS:
            effects.append(
                partial(
                    flag_for_review,
                    merchant_id=payout.merchant_id,
                    kind="payout_unconfigured",
                    reason=f"payouts on {payout.rail.value} need WeChat Pay credentials: {outcome.message}",
                    reference=f"merchant:{payout.merchant_id}:payout-credentials",
                    details={"payout_id": payout.id},
                )
            )
            payout.next_attempt_at = now + NOTENOUGH_WAIT
        else:
            payout.next_attempt_at = now + backoff(payout.tries)
        payout.tries += 1
    payout.claimed_until = None
    payout.claim_token = None
    return effects


# Payout sources that are paid on the default rail when WeChat refused a cash red packet for want of the
# product (dotted path, so app.payouts never imports the source's package at import time).
PRODUCT_OFF_FALLBACKS = {"pool_grant": "app.pools.cash.fall_back_cash_share"}


def _fall_back(payout: PayoutRow) -> None:
    module, _, name = PRODUCT_OFF_FALLBACKS[payout.source_type].rpartition(".")
    getattr(import_module(module), name)(payout.id)


def refuse_pass(payout_id: int, error: DomainError, *, now: datetime | None = None) -> PayoutRow | None:
    """Record that a pass could not begin (``error``, e.g. the money is no longer in withdrawing), back off
    and leave the row unleased: it says why it is stuck, and ``payouts check`` counts repeats. None if
    another pass holds the row now (or it is no longer due).

    Called in a fresh transaction after the failed one (its claim included) was rolled back.
    """
    now = now or utcnow()
    token = str(uuid.uuid4())
    payout = _take_lease(_CLAIM_ANY, payout_id, token, now, None)
    if payout is None:
        return None
    _note(payout, "pass:refused", now=now, code=error.code, message=error.message[:200])
    payout.next_attempt_at = now + backoff(payout.tries)
    payout.tries += 1
    payout.claimed_until = None
    payout.claim_token = None
    _write(payout, token)
    flag_for_review(
        merchant_id=payout.merchant_id,
        kind="payout_refused",
        reason=f"a payout pass was refused before calling WeChat: {error.code}",
        reference=f"payout:{payout.id}:refused",
        details={"payout_id": payout.id, "code": error.code, "message": error.message[:200]},
    )
    return payout


def _may_renumber(payout: PayoutRow, outcome: Outcome) -> bool:
    """Only a query's word that the old number finally failed, for a failure worth one more try."""
    proven = bool(outcome.calls) and outcome.calls[-1] == "query"
    return proven and (payout.rail, outcome.state) in RENUMBER_ON and payout.attempt < MAX_ATTEMPTS


def backoff(tries: int) -> timedelta:
    """Exponential from 15 s, capped at an hour, with "equal jitter" so retries do not move in step."""
    delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** min(tries, 20))
    return timedelta(seconds=delay / 2 + random.uniform(0, delay / 2))  # noqa: S311 - not a secret


def _submit_move(claim: PayoutRow) -> None:
    """withdrawing → payouts in flight (amount + fee), on the accounts read with the claim: the entry, its
    postings, then both balances (``Overdraft`` if withdrawing no longer holds it; the caller rolls back)."""
    gross = claim.amount + claim.fee
    withdrawing: Account = (
        AccountRef(claim.withdrawing_id, claim.merchant_id)
        if claim.withdrawing_id is not None
        else consumer_accounts(claim.merchant_id, claim.consumer_id).withdrawing
    )
    in_flight: Account = (
        AccountRef(claim.in_flight_id, claim.merchant_id)
        if claim.in_flight_id is not None
        else platform_account(AccountKind.PAYOUTS_IN_FLIGHT, claim.merchant_id)  # the merchant's first payout
    )
    batch = Batch(claim.merchant_id)
    batch.add(
        Draft(
            key=f"payout:{claim.id}:submit",
            reason=EntryReason.PAYOUT_SUBMIT,
            cause_type="payout",
            cause_id=str(claim.id),
            lines=[(withdrawing, -gross), (in_flight, gross)],
            memo=f"withdrawal {claim.bill_no} sent to WeChat"[:255],
        )
    )
    batch.write()


def _ledger(payout: Payout | PayoutRow, step: Literal["settle", "return"]) -> None:
    """In flight → settled (+ fee to the merchant) on success; → available on failure."""
    gross = payout.amount + payout.fee
    in_flight = platform_account(AccountKind.PAYOUTS_IN_FLIGHT, payout.merchant_id)
    if step == "settle":
        settled = platform_account(AccountKind.PAYOUTS_SETTLED, payout.merchant_id)
        fee_account = merchant_accounts(payout.merchant_id).rebate
        reason = EntryReason.PAYOUT_SETTLE
        lines = [(in_flight, -gross), (settled, payout.amount), (fee_account, payout.fee)]
        memo = f"withdrawal {payout.bill_no} received in WeChat change"
    else:
        wallet = consumer_accounts(payout.merchant_id, payout.consumer_id)
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
