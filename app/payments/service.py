"""Taking payment: JSAPI prepay for an order, and applying what WeChat confirms, exactly once.

A payment is applied by :func:`apply_transaction`, whichever way WeChat's word arrives — a verified
notification or a verified order-query response — so neither path is trusted more than the other.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol, cast

from flask import current_app
from sqlalchemy import Table, bindparam, func, select, update

from app.consumers.models import WeChatIdentity
from app.core.db import Base, utcnow
from app.core.errors import Conflict, InvalidInput
from app.core.guards import guarded_update
from app.core.money import Money
from app.events.bus import ORDER_CLOSED, ORDER_PAID, Event, emit
from app.extensions import db
from app.gateway.clients import pay_client
from app.gateway.errors import UpstreamBusy, UpstreamError
from app.merchants.models import Merchant
from app.orders.models import ORDER_TRANSITIONS, Order, OrderStatus
from app.orders.service import get_consumer_order
from app.payments.discounts import release_discount, resolve_discount
from app.payments.models import AttemptStatus, PaymentAttempt
from app.reviews.service import flag_for_review
from app.settings import Env, Settings
from wechat.errors import WeChatError

logger = logging.getLogger("hongli.payments")
CHINA = timezone(timedelta(hours=8))
# A prepay is re-used only while comfortably inside its validity.
_REUSE_MARGIN = timedelta(minutes=2)


def _settings() -> Settings:
    settings: Settings = current_app.extensions["hongli.settings"]
    return settings


def notify_url(merchant: Merchant) -> str:
    return f"{_settings().web.public_base_url.rstrip('/')}/wechat/{merchant.slug}/pay/notify"


@dataclass(frozen=True)
class SandboxPayment:
    """Outside production: how to complete the payment as the consumer, in the WeChat sandbox."""

    out_trade_no: str
    mchid: str
    method: str
    url: str
    body: dict[str, str]
    curl: str


@dataclass(frozen=True)
class PaymentRequest:
    order: Order
    attempt: PaymentAttempt
    sandbox: SandboxPayment | None = None


def _sandbox_payment(merchant: Merchant, attempt: PaymentAttempt) -> SandboxPayment | None:
    """The sandbox admin call that pays this attempt (``wx.requestPayment`` has no sandbox). Never in
    production: there WeChat's order number is no business of the client's."""
    settings = _settings()
    if settings.env is Env.PRODUCTION:
        return None
    url = f"{settings.wechat.pay_base_url}/_sandbox/transactions/{attempt.out_trade_no}/pay"
    body = {"mchid": merchant.mchid or ""}
    curl = f"curl -s -X POST {url} -H 'Content-Type: application/json' -d '{json.dumps(body)}'"
    return SandboxPayment(attempt.out_trade_no, body["mchid"], "POST", url, body, curl)


def _payment_request(merchant: Merchant, order: Order, attempt: PaymentAttempt) -> PaymentRequest:
    return PaymentRequest(order, attempt, _sandbox_payment(merchant, attempt))


def _payer_openid(*, consumer_id: int, appid: str) -> str:
    openid = db.session.scalar(
        select(WeChatIdentity.openid).where(
            WeChatIdentity.consumer_id == consumer_id, WeChatIdentity.appid == appid
        )
    )
    if openid is None:
        raise InvalidInput("pay from the app you signed in with", details={"reason": "no_openid_for_app"})
    return openid


def prepare_payment(
    *, merchant: Merchant, consumer_id: int, order_id: int, appid: str, red_packet_id: int | None
) -> PaymentRequest:
    """The ``wx.requestPayment`` parameters for an order; the amount is computed here, never taken from
    the client. Asking again while the prepay is valid returns the same parameters."""
    order = get_consumer_order(merchant_id=merchant.id, consumer_id=consumer_id, order_id=order_id, lock=True)
    if order.status is OrderStatus.PAID:
        raise Conflict("this order is already paid", details={"status": "paid"})
    if order.status is OrderStatus.CLOSED:
        raise Conflict("this order is closed", details={"status": "closed"})
    discount = resolve_discount(order, red_packet_id)
    payable = order.total - discount.amount
    if payable.fen < 1:
        raise InvalidInput("the red packet covers the whole order; at least 1 fen must be paid")
    now = utcnow()
    active = db.session.scalars(
        select(PaymentAttempt).where(
            PaymentAttempt.order_id == order.id, PaymentAttempt.status == AttemptStatus.ACTIVE
        )
    ).all()
    for attempt in active:
        same_terms = (
            attempt.amount == payable
            and attempt.red_packet_id == discount.red_packet_id
            and attempt.appid == appid
        )
        if same_terms and attempt.expires_at - _REUSE_MARGIN > now:
            if attempt.payment_params is None:
                _submit_prepay(merchant, order, attempt)  # an earlier try ended ambiguously: same number
            return _payment_request(merchant, order, attempt)
    for attempt in active:
        if _supersede(merchant, order, attempt):
            raise Conflict("this order is already paid", details={"status": "paid"})
        if attempt.red_packet_id != discount.red_packet_id:
            release_discount(order.id, attempt.red_packet_id)
    number = 1 + (db.session.scalar(select(func.count()).where(PaymentAttempt.order_id == order.id)) or 0)
    first_attempt_at = db.session.scalar(
        select(func.min(PaymentAttempt.created_at)).where(PaymentAttempt.order_id == order.id)
    )
    deadline = (first_attempt_at or now) + timedelta(
        minutes=_settings().payments.unpaid_order_timeout_minutes
    )
    if deadline <= now + _REUSE_MARGIN:
        raise Conflict("the time to pay this order has run out", details={"status": "expired"})
    attempt = PaymentAttempt(
        merchant_id=merchant.id,
        order_id=order.id,
        # Derived from our rows, saved before the call, reused on every retry (out_trade_no ≤ 32 chars).
        out_trade_no=f"HL{order.id:08d}P{number}",
        appid=appid,
        payer_openid=_payer_openid(consumer_id=consumer_id, appid=appid),
        amount=payable,
        discount=discount.amount,
        red_packet_id=discount.red_packet_id,
        expires_at=deadline,
        created_at=now,
    )
    db.session.add(attempt)
    # The unit of work boundary: the key must be durable before WeChat ever sees it.
    db.session.commit()
    order = get_consumer_order(merchant_id=merchant.id, consumer_id=consumer_id, order_id=order_id, lock=True)
    _submit_prepay(merchant, order, attempt)
    return _payment_request(merchant, order, attempt)


def _submit_prepay(merchant: Merchant, order: Order, attempt: PaymentAttempt) -> None:
    client = pay_client(merchant, order_id=order.id)
    try:
        prepay_id = client.jsapi_prepay(
            appid=attempt.appid,
            description=order.description,
            out_trade_no=attempt.out_trade_no,
            notify_url=notify_url(merchant),
            amount_total=attempt.amount.fen,
            payer_openid=attempt.payer_openid,
            time_expire=attempt.expires_at.astimezone(CHINA).isoformat(timespec="seconds"),
        )
    except WeChatError as exc:
        if exc.final:
            attempt.status = AttemptStatus.CLOSED
            db.session.commit()
            raise UpstreamError("WeChat refused the payment", details={"wechat_code": exc.code}) from None
        # Unknown outcome: keep the attempt; the next request re-submits the same out_trade_no.
        db.session.commit()
        raise UpstreamBusy("WeChat did not answer; try again", details={"wechat_code": exc.code}) from None
    attempt.prepay_id = prepay_id
    attempt.payment_params = client.request_payment_params(attempt.appid, prepay_id)


def _supersede(merchant: Merchant, order: Order, attempt: PaymentAttempt) -> bool:
    """Close an attempt whose terms changed. True if WeChat says it was paid meanwhile (then applied)."""
    client = pay_client(merchant, order_id=order.id)
    if attempt.prepay_id is not None or attempt.payment_params is None:
        state = _query(client, attempt)
        if state is not None and state.get("trade_state") == "SUCCESS":
            apply_transaction(merchant=merchant, resource=state, source="query")
            return True
        try:
            client.close_order(attempt.out_trade_no)
        except WeChatError as exc:
            if exc.code not in ("ORDER_NOT_EXIST", "ORDERNOTEXIST"):
                raise UpstreamBusy(
                    "could not close the previous payment; try again", details={"wechat_code": exc.code}
                ) from None
    attempt.status = AttemptStatus.SUPERSEDED
    return False


def _query(client: Any, attempt: PaymentAttempt) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = client.query_order_by_out_trade_no(attempt.out_trade_no)
        return result
    except WeChatError as exc:
        if exc.code in ("ORDER_NOT_EXIST", "ORDERNOTEXIST"):
            return None
        raise UpstreamBusy(
            "WeChat did not answer the order query", details={"wechat_code": exc.code}
        ) from None


@dataclass(frozen=True)
class Applied:
    """What applying a transaction did; ``ok`` is False when it was refused (and flagged)."""

    ok: bool
    changed: bool
    reason: str = ""


class PayingMerchant(Protocol):
    """What applying a payment reads of its merchant: a :class:`Merchant` or a callback's snapshot."""

    @property
    def id(self) -> int: ...
    @property
    def mchid(self) -> str | None: ...
    @property
    def mp_appid(self) -> str | None: ...
    @property
    def oa_appid(self) -> str | None: ...


def foreign_payment(merchant: PayingMerchant, resource: dict[str, Any]) -> str | None:
    """Why ``resource`` is not a payment to ``merchant`` (another mchid or app), else None."""
    if resource.get("mchid") != merchant.mchid or resource.get("appid") not in (
        merchant.mp_appid,
        merchant.oa_appid,
    ):
        return "payment for another merchant or app"
    return None


def terms_mismatch(resource: dict[str, Any], asked_fen: int) -> str | None:
    """Why ``resource`` is not a successful payment of exactly ``asked_fen`` CNY, else None."""
    if resource.get("trade_state") != "SUCCESS":
        return f"trade_state is {resource.get('trade_state')!r}, not SUCCESS"
    amount = resource.get("amount")
    if not isinstance(amount, dict):
        return f"amount {amount!r} is not an object"
    total = amount.get("total")
    if type(total) is not int or total != asked_fen or amount.get("currency", "CNY") != "CNY":
        return f"paid amount {total!r} differs from the {asked_fen} fen asked"
    return None


@dataclass(frozen=True, slots=True)
class LockedPayment:
    """A payment attempt and its order, both rows locked (``FOR UPDATE``) until the transaction ends."""

    attempt_id: int
    attempt_status: AttemptStatus
    amount: Money
    discount: Money
    red_packet_id: int | None
    order_id: int
    order_status: OrderStatus
    consumer_id: int
    total: Money


# The notification hot path's statements, built once with bound parameters and on the tables rather than
# the mapped classes: no per-call construction, cache-key generation or ORM compile step.
_attempts = cast(Table, PaymentAttempt.__table__)
_orders = cast(Table, Order.__table__)
_LOCK_PAYMENT = (
    select(
        _attempts.c.id,
        _attempts.c.status,
        _attempts.c.amount,
        _attempts.c.discount,
        _attempts.c.red_packet_id,
        _orders.c.id,
        _orders.c.status,
        _orders.c.consumer_id,
        _orders.c.total,
    )
    # The order first in FROM: PostgreSQL takes the row locks in that order, and every other path that
    # touches an attempt (prepay, supersede, close) holds its order's lock first; attempt-then-order
    # here would deadlock against them. Both rows are locked, so both are re-read after a wait.
    .select_from(_orders.join(_attempts, _attempts.c.order_id == _orders.c.id))
    .where(_attempts.c.merchant_id == bindparam("merchant"), _attempts.c.out_trade_no == bindparam("trade"))
    .with_for_update()
)
# The guards are these two conditional UPDATEs (their row counts decide, on any engine): an attempt
# becomes paid once, an order becomes paid only from a state that allows it. The lock above makes
# concurrent deliveries queue on PostgreSQL; SQLite serialises whole transactions (BEGIN IMMEDIATE).
_MARK_ATTEMPT_PAID = (
    update(_attempts)
    .where(_attempts.c.id == bindparam("attempt"), _attempts.c.status != AttemptStatus.PAID)
    .values(status=AttemptStatus.PAID)
)
_PAYABLE = sorted(status for status, allowed in ORDER_TRANSITIONS.items() if OrderStatus.PAID in allowed)
_MARK_ORDER_PAID = (
    update(_orders)
    .where(_orders.c.id == bindparam("order"), _orders.c.status.in_(_PAYABLE))
    .values(
        status=OrderStatus.PAID,
        paid_amount=bindparam("paid", type_=_orders.c.paid_amount.type),
        discount=bindparam("discounted", type_=_orders.c.discount.type),
        transaction_id=bindparam("transaction", type_=_orders.c.transaction_id.type),
        paid_at=bindparam("at", type_=_orders.c.paid_at.type),
    )
)


@dataclass(frozen=True, slots=True)
class SeenAttempt:
    """A payment attempt as read without a lock (by the statement that logs its notification)."""

    order_id: int
    status: AttemptStatus
    amount: Money


def already_applied(merchant: PayingMerchant, resource: dict[str, Any], seen: SeenAttempt | None) -> bool:
    """True when ``resource`` repeats a payment already applied, with nothing :func:`apply_locked` would
    refuse (another merchant or app, other terms): it would answer "a duplicate" and change nothing.

    No lock is needed to know it: an attempt never leaves PAID. Any other answer takes the locked path.
    """
    return (
        seen is not None
        and seen.status is AttemptStatus.PAID
        and foreign_payment(merchant, resource) is None
        and terms_mismatch(resource, seen.amount.fen) is None
    )


def lock_payment(merchant_id: int, out_trade_no: object) -> LockedPayment | None:
    """Lock the attempt ``out_trade_no`` of ``merchant_id`` and its order (one statement, columns only:
    nothing is loaded into the session). Concurrent notifications of one payment queue here."""
    if not isinstance(out_trade_no, str) or not out_trade_no:
        return None
    # Core statements do not autoflush; flush so the read (and the expiry after the UPDATEs) cannot
    # drop a change made earlier in this session.
    db.session.flush()
    row = db.session.execute(_LOCK_PAYMENT, {"merchant": merchant_id, "trade": out_trade_no}).one_or_none()
    return None if row is None else LockedPayment(*row)


def apply_transaction(*, merchant: PayingMerchant, resource: dict[str, Any], source: str) -> Applied:
    """Apply a verified ``TRANSACTION.SUCCESS`` resource (or query result) under the order's row lock.

    Refuses — changing nothing but a review flag — a payment for another merchant or app, an unknown
    ``out_trade_no``, a state other than SUCCESS, or an amount other than the one we asked for.
    """
    locked = lock_payment(merchant.id, resource.get("out_trade_no"))
    return apply_locked(merchant=merchant, resource=resource, source=source, locked=locked)


def apply_locked(
    *, merchant: PayingMerchant, resource: dict[str, Any], source: str, locked: LockedPayment | None
) -> Applied:
    """:func:`apply_transaction` once :func:`lock_payment` has found (and locked) ``locked``."""
    reference = f"{source}:{resource.get('out_trade_no', '')}"
    if foreign := foreign_payment(merchant, resource):
        return _refuse(merchant, foreign, reference, resource)
    if locked is None:
        return _refuse(merchant, "payment for an unknown out_trade_no", reference, resource)
    if mismatch := terms_mismatch(resource, locked.amount.fen):
        return _refuse(merchant, mismatch, reference, resource)
    if locked.attempt_status is AttemptStatus.PAID:
        return Applied(ok=True, changed=False)  # a duplicate: already applied
    transaction_id = str(resource.get("transaction_id", ""))
    if locked.order_status is OrderStatus.PAID:
        if not _set_attempt_paid(locked.attempt_id):
            return Applied(ok=True, changed=False)  # a concurrent duplicate applied it first
        return _double_payment(merchant, locked, reference, transaction_id)
    if OrderStatus.PAID not in ORDER_TRANSITIONS[locked.order_status]:
        return _refuse(
            merchant, f"order in state {locked.order_status.value} cannot become paid", reference, resource
        )
    if not _set_attempt_paid(locked.attempt_id):
        return Applied(ok=True, changed=False)  # a concurrent duplicate applied it first
    marked = db.session.execute(
        _MARK_ORDER_PAID,
        {
            "order": locked.order_id,
            "paid": locked.amount,
            "discounted": locked.discount,
            "transaction": transaction_id,
            "at": _success_time(resource) or utcnow(),
        },
    )
    _forget_loaded(Order, locked.order_id)
    if marked.rowcount != 1:  # type: ignore[attr-defined]
        # Another attempt of this order was paid between our read and our write.
        return _double_payment(merchant, locked, reference, transaction_id)
    emit(
        Event(
            type=ORDER_PAID,
            merchant_id=merchant.id,
            subject_type="order",
            subject_id=locked.order_id,
            dedupe_key=f"order.paid:{locked.order_id}",
            payload={
                "order_id": locked.order_id,
                "consumer_id": locked.consumer_id,
                "total_fen": locked.total.fen,
                "paid_fen": locked.amount.fen,
                "discount_fen": locked.discount.fen,
                "red_packet_id": locked.red_packet_id,
                "transaction_id": transaction_id,
                "payer_openid": (resource.get("payer") or {}).get("openid"),  # a risk signal (app.risk)
                # Which coupons WeChat Pay applied and who paid for them (app.coupons reads it), and what
                # the payer paid (below paid_fen only when WeChat applied a coupon; None if not told).
                "promotion_detail": resource.get("promotion_detail") or [],
                "payer_total_fen": _payer_total(resource),
                "source": source,
            },
        )
    )
    return Applied(ok=True, changed=True)


def _payer_total(resource: dict[str, Any]) -> int | None:
    amount = resource.get("amount")
    payer_total = amount.get("payer_total") if isinstance(amount, dict) else None
    return payer_total if isinstance(payer_total, int) and not isinstance(payer_total, bool) else None


def _set_attempt_paid(attempt_id: int) -> bool:
    """Mark the attempt paid; False (nothing changed) if it already was."""
    marked = db.session.execute(_MARK_ATTEMPT_PAID, {"attempt": attempt_id})
    _forget_loaded(PaymentAttempt, attempt_id)
    return bool(marked.rowcount == 1)  # type: ignore[attr-defined]


def _double_payment(
    merchant: PayingMerchant, locked: LockedPayment, reference: str, transaction_id: str
) -> Applied:
    # A second, distinct payment of the same order (two attempts both paid): real money to return.
    flag_for_review(
        merchant_id=merchant.id,
        kind="double_payment",
        reason="order paid twice; refund the extra payment",
        reference=reference,
        details={"order_id": locked.order_id, "transaction_id": transaction_id},
    )
    return Applied(ok=True, changed=True, reason="double payment flagged")


def _forget_loaded(model: type[Base], row_id: int) -> None:
    """Expire this session's copy of a row just changed by a statement, if it holds one: the next read
    of it loads the row as it now is."""
    loaded = db.session.identity_map.get(db.session.identity_key(model, row_id))
    if loaded is not None:
        db.session.expire(loaded)


def _success_time(resource: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(resource["success_time"])).astimezone(UTC)
    except (KeyError, ValueError):
        return None


def _refuse(merchant: PayingMerchant, reason: str, reference: str, resource: dict[str, Any]) -> Applied:
    logger.warning("payment refused: %s (%s)", reason, reference)
    flag_for_review(
        merchant_id=merchant.id,
        kind="payment_mismatch",
        reason=reason,
        reference=reference,
        details={
            k: resource.get(k)
            for k in ("mchid", "appid", "out_trade_no", "transaction_id", "trade_state", "amount")
        },
    )
    return Applied(ok=False, changed=False, reason=reason)


def confirm_payment(*, merchant: Merchant, consumer_id: int, order_id: int) -> Order:
    """The user says they paid: ask WeChat (order query, verified) and apply what it answers."""
    order = get_consumer_order(merchant_id=merchant.id, consumer_id=consumer_id, order_id=order_id)
    if order.status is not OrderStatus.PENDING_PAYMENT:
        return order
    _query_and_apply(merchant, order)
    db.session.refresh(order)
    return order


def _query_and_apply(merchant: Merchant, order: Order) -> bool:
    """Query every attempt of ``order`` that might be paid; apply a SUCCESS. True if one was found."""
    client = pay_client(merchant, order_id=order.id)
    attempts = db.session.scalars(
        select(PaymentAttempt).where(
            PaymentAttempt.order_id == order.id,
            PaymentAttempt.status.in_([AttemptStatus.ACTIVE, AttemptStatus.SUPERSEDED]),
        )
    ).all()
    for attempt in attempts:
        state = _query(client, attempt)
        if state is not None and state.get("trade_state") == "SUCCESS":
            return apply_transaction(merchant=merchant, resource=state, source="query").ok
    return False


def close_expired_orders(now: datetime | None = None, limit: int = 200) -> int:
    """Close orders whose time to pay ran out — after asking WeChat whether they were paid after all."""
    now = now or utcnow()
    expired_ids = db.session.scalars(
        select(PaymentAttempt.order_id)
        .join(Order, Order.id == PaymentAttempt.order_id)
        .where(Order.status == OrderStatus.PENDING_PAYMENT)
        .group_by(PaymentAttempt.order_id)
        .having(func.max(PaymentAttempt.expires_at) <= now)
        .limit(limit)
    ).all()
    closed = 0
    for order_id in expired_ids:
        try:
            if close_order(order_id=order_id):
                closed += 1
            db.session.commit()
        except Exception:
            db.session.rollback()
            logger.exception("could not close expired order %s; will retry", order_id)
    return closed


def close_order(*, order_id: int) -> bool:
    """Close one unpaid order at WeChat and here; True if closed (False if it turned out paid)."""
    # The lock makes a notification of this order wait on PostgreSQL; the guard is the conditional
    # pending → closed UPDATE below (and the paid UPDATE's own condition on the notification's side).
    order = db.session.scalar(select(Order).where(Order.id == order_id).with_for_update())
    if order is None or order.status is not OrderStatus.PENDING_PAYMENT:
        return False
    merchant = db.session.get(Merchant, order.merchant_id)
    assert merchant is not None
    if _query_and_apply(merchant, order):
        return False
    client = pay_client(merchant, order_id=order.id)
    active = db.session.scalars(
        select(PaymentAttempt).where(
            PaymentAttempt.order_id == order.id, PaymentAttempt.status == AttemptStatus.ACTIVE
        )
    ).all()
    for attempt in active:
        try:
            client.close_order(attempt.out_trade_no)
        except WeChatError as exc:
            if exc.code in ("ORDERPAID", "ORDER_PAID"):
                # Paid between our query and the close: apply the payment now (its notification will
                # find it applied) instead of failing the sweep.
                _query_and_apply(merchant, order)
                return False
            if exc.code not in ("ORDER_NOT_EXIST", "ORDERNOTEXIST", "ORDER_CLOSED", "ORDERCLOSED"):
                raise
    # The guard: pending → closed by a conditional UPDATE. A notification applied meanwhile (it cannot
    # on PostgreSQL, which holds the order's lock; it would on an engine that does not) leaves it paid.
    if not guarded_update(
        Order,
        order.id,
        Order.status == OrderStatus.PENDING_PAYMENT,
        status=OrderStatus.CLOSED,
        closed_at=utcnow(),
    ):
        return False
    db.session.execute(
        update(PaymentAttempt)
        .where(PaymentAttempt.order_id == order.id, PaymentAttempt.status == AttemptStatus.ACTIVE)
        .values(status=AttemptStatus.CLOSED)
        .execution_options(synchronize_session="fetch")
    )
    emit(
        Event(
            type=ORDER_CLOSED,
            merchant_id=merchant.id,
            subject_type="order",
            subject_id=order.id,
            dedupe_key=f"order.closed:{order.id}",
            payload={"order_id": order.id},
        )
    )
    return True
