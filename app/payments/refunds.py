"""Refunds: never more than was paid (even concurrently), submitted with our own number, settled by
WeChat's REFUND.* notifications (or a query), each success emitted once."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, select

from app.core.db import utcnow
from app.core.errors import ConcurrentChange, Conflict, InvalidInput
from app.core.guards import guarded_update
from app.core.money import Money
from app.events.bus import REFUND_SUCCEEDED, Event, emit
from app.extensions import db
from app.gateway.clients import pay_client
from app.merchants.models import Merchant
from app.orders.models import Order, OrderStatus
from app.orders.service import get_order_by_out_no
from app.payments.models import REFUND_TRANSITIONS, PaymentAttempt, Refund, RefundStatus
from app.payments.service import PayingMerchant
from app.personal.models import FUNDING_ORDER_PREFIX
from app.queue import QueueName, enqueue_after_commit
from app.reviews.service import flag_for_review
from wechat.errors import WeChatError

logger = logging.getLogger("hongli.refunds")


def _digest(amount: Money, reason: str | None) -> str:
    return hashlib.sha256(f"{amount.fen}|{reason or ''}".encode()).hexdigest()


def request_refund(
    *, merchant_id: int, out_order_no: str, out_refund_no: str, amount: Money, reason: str | None
) -> tuple[Refund, bool]:
    """Record a refund (idempotent on ``out_refund_no``) under the order's row lock and queue its submission.

    The order's ``refund_committed`` — every refund not finally failed — never exceeds what was paid.
    """
    order = get_order_by_out_no(merchant_id=merchant_id, out_order_no=out_order_no, lock=True)
    if order.out_order_no.startswith(FUNDING_ORDER_PREFIX):
        # Money already promised to a friend: only the packet itself returns it (unclaimed, lost, expired).
        raise FundingPaymentRefused(
            "this payment funds a personal red packet; it is refunded by the packet when unclaimed",
            details={"order_id": order.id},
        )
    digest = _digest(amount, reason)
    existing = db.session.scalar(
        select(Refund).where(Refund.merchant_id == merchant_id, Refund.out_refund_no == out_refund_no)
    )
    if existing is not None:
        if existing.order_id != order.id or existing.request_digest != digest:
            raise Conflict(
                "this out_refund_no was used for another refund", details={"out_refund_no": out_refund_no}
            )
        return existing, False
    if order.status is not OrderStatus.PAID:
        raise Conflict(
            f"order is {order.status.value}; only paid orders can be refunded",
            details={"status": order.status.value},
        )
    if amount.fen < 1:
        raise InvalidInput(
            "amount_fen must be at least 1", details={"fields": {"amount_fen": ["must be >= 1"]}}
        )
    return _commit_refund(
        order, out_refund_no=out_refund_no, digest=digest, amount=amount, reason=reason
    ), True


def refund_funding_payment(*, order_id: int, out_refund_no: str, amount: Money, reason: str) -> Refund:
    """Refund a personal red packet's funding payment (app.personal's own flow): the same guarded row and
    submission as a shop refund, which :func:`request_refund` refuses for such an order."""
    order = db.session.scalar(
        select(Order).where(Order.id == order_id).with_for_update().execution_options(populate_existing=True)
    )
    if order is None or order.status is not OrderStatus.PAID:
        raise Conflict("the funding payment is not paid", details={"order_id": order_id})
    return _commit_refund(
        order, out_refund_no=out_refund_no, digest=_digest(amount, reason), amount=amount, reason=reason
    )


def _commit_refund(
    order: Order, *, out_refund_no: str, digest: str, amount: Money, reason: str | None
) -> Refund:
    remaining = order.paid_amount - order.refund_committed
    if amount > remaining:
        raise Conflict(
            f"refund of {amount.fen} fen exceeds the {remaining.fen} fen still refundable",
            details={"refundable_fen": remaining.fen},
        )
    # The guard: the committed total grows only while it stays within what was paid (one conditional
    # UPDATE, whatever the engine; the order lock above only makes concurrent requests queue).
    if not guarded_update(
        Order,
        order.id,
        Order.status == OrderStatus.PAID,
        Order.refund_committed + amount <= Order.paid_amount,
        refund_committed=Order.refund_committed + amount,
    ):
        raise ConcurrentChange("the order's refundable amount changed meanwhile; ask again")
    refund = Refund(
        merchant_id=order.merchant_id,
        order_id=order.id,
        out_refund_no=out_refund_no,
        wechat_refund_no="pending",
        request_digest=digest,
        amount=amount,
        reason=reason,
    )
    db.session.add(refund)
    db.session.flush()
    # Our number for WeChat: derived from the row, fixed before the first call, reused on every retry.
    refund.wechat_refund_no = f"HLR{refund.id:010d}"
    enqueue_after_commit("jobs.payments.submit_refund", refund.id, queue=QueueName.DEFAULT)
    return refund


class FundingPaymentRefused(Conflict):
    """A shop or console refund of a personal red packet's funding payment (409)."""

    code = "personal_packet_funding"


def _lock_refund_and_order(*where: ColumnElement[bool]) -> tuple[Refund, Order] | None:
    """The refund matching ``where`` and its order, both locked and read fresh — the order first.

    Every path that changes an order's refund totals locks the order before its refunds (requests,
    notifications, submissions), so on PostgreSQL they queue without deadlocks. The locks are not the
    guard (SQLite drops them and serialises whole transactions): the refund's transitions are
    conditional UPDATEs and the order's totals relative ones (see :func:`_move`, :func:`_finish`).
    """
    order_id = db.session.scalar(select(Refund.order_id).where(*where))
    if order_id is None:
        return None
    order = db.session.scalar(
        select(Order).where(Order.id == order_id).with_for_update().execution_options(populate_existing=True)
    )
    refund = db.session.scalar(
        select(Refund).where(*where).with_for_update().execution_options(populate_existing=True)
    )
    assert order is not None and refund is not None
    return refund, order


def submit_refund(refund_id: int) -> RefundStatus:
    """Send a REQUESTED refund to WeChat (same number every time); idempotent, safe to repeat."""
    locked = _lock_refund_and_order(Refund.id == refund_id)
    if locked is None:
        return RefundStatus.FAILED
    refund, order = locked
    if refund.status is not RefundStatus.REQUESTED:
        return refund.status
    merchant = db.session.get(Merchant, refund.merchant_id)
    assert merchant is not None
    attempt = db.session.scalar(
        select(PaymentAttempt).where(PaymentAttempt.order_id == order.id, PaymentAttempt.status == "paid")
    )
    assert attempt is not None, "a paid order has a paid attempt"
    refund.submit_attempts += 1
    from app.payments.service import notify_url

    try:
        answer = pay_client(merchant, order_id=order.id).create_refund(
            out_refund_no=refund.wechat_refund_no,
            out_trade_no=attempt.out_trade_no,
            refund=refund.amount.fen,
            total=attempt.amount.fen,
            reason=refund.reason,
            notify_url=notify_url(merchant),
        )
    except WeChatError as exc:
        if exc.final:
            _finish(refund, order, RefundStatus.FAILED, failure_code=exc.code)
            return refund.status
        raise  # retryable / ambiguous: the job retries with the same number
    refund.refund_id = answer.get("refund_id") or refund.refund_id
    _apply_status(refund, order, str(answer.get("status", "PROCESSING")), answer)
    return refund.status


_WECHAT_STATES = {
    "PROCESSING": RefundStatus.PROCESSING,
    "SUCCESS": RefundStatus.SUCCEEDED,
    "ABNORMAL": RefundStatus.ABNORMAL,
    "CLOSED": RefundStatus.CLOSED,
}


def _apply_status(refund: Refund, order: Order, wechat_status: str, resource: dict[str, Any]) -> None:
    target = _WECHAT_STATES.get(wechat_status)
    if target is None or target is refund.status:
        return
    if target not in REFUND_TRANSITIONS[refund.status]:
        logger.warning("ignored refund %s transition %s -> %s", refund.id, refund.status, target)
        if target is RefundStatus.SUCCEEDED:
            # WeChat says the money went out, but Hongli counts this refund as not paid (and its amount
            # as refundable again): a person must reconcile it, or the order can be refunded twice.
            flag_for_review(
                merchant_id=refund.merchant_id,
                kind="refund_mismatch",
                reason=f"WeChat reports a refund Hongli has as {refund.status.value} as succeeded",
                reference=f"refund:{refund.wechat_refund_no}",
                details={"refund_id": refund.id, "order_id": order.id, "amount_fen": refund.amount.fen},
            )
        return
    if target is RefundStatus.PROCESSING:
        _move(refund, target)
        return
    _finish(refund, order, target, success_time=resource.get("success_time"))


def _finish(
    refund: Refund,
    order: Order,
    status: RefundStatus,
    *,
    failure_code: str | None = None,
    success_time: object = None,
) -> None:
    succeeded = status is RefundStatus.SUCCEEDED
    _move(
        refund,
        status,
        failure_code=failure_code,
        **({"succeeded_at": _parse_time(success_time) or utcnow()} if succeeded else {}),
    )
    # The order's totals move by relative UPDATEs (``SET refunded = refunded + n``): no total is ever
    # written from a value read before.
    if status in (RefundStatus.CLOSED, RefundStatus.FAILED):
        # The money was not returned: it is refundable again.
        guarded_update(Order, order.id, refund_committed=Order.refund_committed - refund.amount)
        return
    if succeeded:
        guarded_update(Order, order.id, refunded=Order.refunded + refund.amount)
        emit(
            Event(
                type=REFUND_SUCCEEDED,
                merchant_id=refund.merchant_id,
                subject_type="refund",
                subject_id=refund.id,
                dedupe_key=f"refund.succeeded:{refund.id}",
                payload={
                    "refund_id": refund.id,
                    "order_id": order.id,
                    "amount_fen": refund.amount.fen,
                    "refunded_total_fen": order.refunded.fen,
                    "paid_fen": order.paid_amount.fen,
                    "full": order.refunded == order.paid_amount,
                },
            )
        )


def _move(refund: Refund, target: RefundStatus, **values: object) -> None:
    """The refund's transition as ``UPDATE … WHERE status = <as read>``: a notification and the submit job
    racing on one refund cannot both apply it; the loser's transaction fails and is retried, re-read."""
    if not guarded_update(Refund, refund.id, Refund.status == refund.status, status=target, **values):
        raise ConcurrentChange(f"refund {refund.id} changed meanwhile")


def _parse_time(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)).astimezone(UTC)
    except ValueError:
        return None


def apply_refund_notification(*, merchant: PayingMerchant, event_type: str, resource: dict[str, Any]) -> bool:
    """Apply a verified REFUND.SUCCESS / ABNORMAL / CLOSED; False if the refund is not ours."""
    if resource.get("mchid") not in (None, merchant.mchid):
        return False
    locked = _lock_refund_and_order(
        Refund.merchant_id == merchant.id, Refund.wechat_refund_no == str(resource.get("out_refund_no", ""))
    )
    if locked is None:
        return False
    refund, order = locked
    amount = (resource.get("amount") or {}).get("refund")
    if amount is not None and amount != refund.amount.fen:
        logger.warning("refund %s: notified amount %s differs from %s", refund.id, amount, refund.amount.fen)
        return False
    if resource.get("refund_id"):
        refund.refund_id = str(resource["refund_id"])
    status = str(resource.get("refund_status") or event_type.removeprefix("REFUND."))
    _apply_status(refund, order, status, resource)
    return True


def refunds_for_order(order_id: int) -> list[Refund]:
    return list(db.session.scalars(select(Refund).where(Refund.order_id == order_id).order_by(Refund.id)))
