"""Applying a payment with statements must not lose what the same session changed before it."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.merchants.models import Merchant
from app.orders.models import Order, OrderStatus
from app.payments.models import AttemptStatus, PaymentAttempt
from app.payments.service import apply_transaction
from tests.payments.conftest import Shop


def test_changes_pending_in_the_session_survive_applying_a_payment(shop: Shop, db_session: Session) -> None:
    placed, out_trade_no = shop.prepared("SO-P1", 2500)
    order = db_session.get(Order, placed["id"])
    merchant = db_session.get(Merchant, shop.merchant.id)
    assert order is not None and merchant is not None
    order.description = "gift wrapped"  # pending, not yet flushed

    applied = apply_transaction(
        merchant=merchant, resource=shop.forger.transaction(out_trade_no, 2500), source="query"
    )

    assert applied.ok and applied.changed
    db_session.flush()
    db_session.expire_all()
    reloaded = db_session.get(Order, placed["id"])
    assert reloaded is not None
    assert (reloaded.description, reloaded.status, reloaded.paid_amount.fen) == (
        "gift wrapped",
        OrderStatus.PAID,
        2500,
    )
    attempt = db_session.query(PaymentAttempt).filter_by(out_trade_no=out_trade_no).one()
    assert attempt.status is AttemptStatus.PAID


def test_a_copy_loaded_before_the_payment_reads_as_paid_after_it(shop: Shop, db_session: Session) -> None:
    placed, out_trade_no = shop.prepared("SO-P2", 2600)
    order = db_session.get(Order, placed["id"])
    merchant = db_session.get(Merchant, shop.merchant.id)
    assert order is not None and merchant is not None
    assert order.status is OrderStatus.PENDING_PAYMENT

    apply_transaction(merchant=merchant, resource=shop.forger.transaction(out_trade_no, 2600), source="query")

    assert (order.status, order.paid_amount.fen) == (OrderStatus.PAID, 2600)
