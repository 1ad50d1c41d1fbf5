"""``rebates.red_packet_redeemed_once`` in ``flask ledger check``: clean after real bookings (a packet earned,
then spent), and failing on each way one discount or one packet can go wrong (issue #18: two concurrent
payments spent one red packet on two orders; the second discount had no redemption)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session

import tests.rebates.test_stateful as stateful
from app.core.db import utcnow
from app.core.money import Money
from app.extensions import db
from app.ledger.accounts import campaign_accounts, merchant_accounts
from app.ledger.models import EntryReason, JournalEntry
from app.ledger.service import post_entry
from app.orders.models import Order, OrderStatus
from app.payments.models import AttemptStatus, PaymentAttempt
from app.rebates.checks import red_packet_redeemed_once
from app.rebates.models import GrantStatus, RebateGrant
from app.rebates.service import DISCOUNT
from app.red_packets.models import RedPacket, RedPacketStatus
from tests.factories import make_consumer
from tests.sandbox import Sandbox

CHECK = "rebates.red_packet_redeemed_once"


def _check(app: Flask) -> tuple[int, list[str]]:
    result = app.test_cli_runner().invoke(args=["ledger", "check"])
    return result.exit_code, result.output.splitlines()


@pytest.fixture
def spent(app: Flask, sandbox: Sandbox, db_session: Session) -> Iterator[RedPacket]:
    """A campaign after two orders: the first earned a red packet, the second spent it. Yields the packet."""
    merchant = sandbox.onboard("redeem-tea")
    world = stateful.World(merchant, [make_consumer(merchant).id])
    machine = stateful.make_machine(world)()
    buyer = world.consumers[0]
    machine._pay(buyer, 60_000, None)
    packet = machine._live_packets()[0]
    machine._pay(buyer, 60_000, packet)
    db.session.refresh(packet)
    assert packet.status is RedPacketStatus.REDEEMED
    yield packet
    machine.teardown()


def _redemption(packet: RedPacket) -> RebateGrant:
    return db.session.scalars(
        select(RebateGrant).where(RebateGrant.red_packet_id == packet.id, RebateGrant.beneficiary == DISCOUNT)
    ).one()


def _paid_order_with(packet: RedPacket, discount: int) -> Order:
    """A second order paid with ``packet``, as the race left it: the payment named the packet, the
    rebate engine booked nothing for it."""
    first = db.session.get(Order, packet.order_id)
    assert first is not None
    order = Order(
        merchant_id=first.merchant_id,
        consumer_id=first.consumer_id,
        out_order_no=f"RACE-{packet.id}",
        request_digest="0" * 64,
        status=OrderStatus.PAID,
        total=first.total,
        items=first.items,
        description=first.description,
        paid_amount=first.total - Money(discount),
        discount=Money(discount),
        paid_at=utcnow(),
    )
    db.session.add(order)
    db.session.flush()
    db.session.add(
        PaymentAttempt(
            merchant_id=order.merchant_id,
            order_id=order.id,
            out_trade_no=f"HL{order.id:08d}P1",
            appid="wx-race",
            payer_openid="o-race",
            amount=order.paid_amount,
            discount=order.discount,
            red_packet_id=packet.id,
            status=AttemptStatus.PAID,
            expires_at=utcnow() + timedelta(minutes=30),
        )
    )
    db.session.flush()
    return order


def _book_redemption(
    packet: RedPacket, order: Order, discount: int, *, reason: EntryReason, packet_id: int | None
) -> RebateGrant:
    """A discount grant and its entry for ``order``, written around the engine (from the campaign's budget:
    the packet's reserve is spent)."""
    entry = post_entry(
        key=f"grant:{order.id}:{packet.rule_version_id}:{packet.rule_id}:{DISCOUNT}",
        reason=reason,
        cause_type="order",
        cause_id=str(order.id),
        lines=[
            (campaign_accounts(packet.merchant_id, packet.campaign_id).budget, Money(-discount)),
            (merchant_accounts(packet.merchant_id).rebate, Money(discount)),
        ],
        merchant_id=packet.merchant_id,
    )
    assert entry is not None
    grant = RebateGrant(
        merchant_id=packet.merchant_id,
        campaign_id=packet.campaign_id,
        rule_version_id=packet.rule_version_id,
        rule_id=packet.rule_id,
        order_id=order.id,
        red_packet_id=packet_id,
        beneficiary=DISCOUNT,
        amount=Money(discount),
        basis="written around the engine",
        status=GrantStatus.AVAILABLE,
    )
    db.session.add(grant)
    db.session.flush()
    return grant


def _entry_id(grant: RebateGrant) -> int | None:
    return db.session.scalar(select(JournalEntry.id).where(JournalEntry.idempotency_key == _key(grant)))


def _key(grant: RebateGrant) -> str:
    return f"grant:{grant.order_id}:{grant.rule_version_id}:{grant.rule_id}:{DISCOUNT}"


def _drop_unique(table: str, columns: list[str]) -> None:
    """Drop the unique constraint on ``columns`` (rolled back with the test): a database from before it."""
    for constraint in inspect(db.session.connection()).get_unique_constraints(table):
        if constraint["column_names"] == columns:
            db.session.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{constraint["name"]}"'))


def test_real_redemptions_pass(app: Flask, spent: RedPacket) -> None:
    grant = _redemption(spent)
    order = db.session.get(Order, grant.order_id)
    assert order is not None and order.discount.fen > 0 and grant.amount == order.discount
    assert red_packet_redeemed_once() == []
    code, lines = _check(app)
    assert code == 0, lines


def test_a_second_order_paid_with_the_same_packet_fails(app: Flask, spent: RedPacket) -> None:
    discount = _redemption(spent).amount.fen
    second = _paid_order_with(spent, discount)

    code, lines = _check(app)

    assert code == 1
    assert (
        f"{CHECK}: order {second.id} paid with a {discount} fen discount has 0 red-packet redemptions"
        in lines
    )
    assert f"{CHECK}: red packet {spent.id} paid for 2 orders" in lines
    assert lines[-1].startswith("ledger check FAILED")


def test_a_redemption_of_another_amount_fails(app: Flask, spent: RedPacket, db_session: Session) -> None:
    grant = _redemption(spent)
    entry_id = _entry_id(grant)
    # The order says one discount, the redemption booked another.
    db_session.execute(
        text("UPDATE orders SET discount = discount + 7 WHERE id = :id"), {"id": grant.order_id}
    )
    db.session.expire_all()

    assert red_packet_redeemed_once() == [
        f"redemption grant {grant.id} of order {grant.order_id} (paid, discount {grant.amount.fen + 7} fen): "
        f"grant of {grant.amount.fen} fen, entry {entry_id} (red_packet_redeem) moving {grant.amount.fen} fen"
    ]


def test_a_redemption_booked_under_another_reason_fails(app: Flask, spent: RedPacket) -> None:
    discount = _redemption(spent).amount.fen
    second = _paid_order_with(spent, discount)
    # The discount credited to the merchant as if it were a rebate: right amount, wrong kind of entry.
    grant = _book_redemption(spent, second, discount, reason=EntryReason.REBATE_PENDING, packet_id=None)

    violations = red_packet_redeemed_once()

    assert (
        f"redemption grant {grant.id} of order {second.id} (paid, discount {discount} fen): grant of "
        f"{discount} fen, entry {_entry_id(grant)} (rebate_pending) moving {discount} fen"
    ) in violations, violations
    assert not any(v.startswith(f"order {second.id} ") for v in violations)  # it has one redemption


def test_a_packet_redeemed_by_two_orders_fails(app: Flask, spent: RedPacket) -> None:
    _drop_unique("rebate_grants", ["red_packet_id", "beneficiary"])
    first = _redemption(spent)
    discount = first.amount.fen
    second = _paid_order_with(spent, discount)
    # A second redemption booked in full for the second order.
    _book_redemption(spent, second, discount, reason=EntryReason.RED_PACKET_REDEEM, packet_id=spent.id)

    violations = red_packet_redeemed_once()

    assert f"red packet {spent.id} is redeemed by 2 orders" in violations
    assert f"red packet {spent.id} paid for 2 orders" in violations
    assert (
        f"red packet {spent.id} is redeemed for order {first.order_id} but has 2 redemption grants"
        in violations
    )
    # The second grant spends a packet redeemed for another order.
    assert any(
        v.startswith("redemption grant ")
        and f"of order {second.id} spends red packet {spent.id} (redeemed" in v
        for v in violations
    ), violations
    code, lines = _check(app)
    assert code == 1
    assert f"{CHECK}: red packet {spent.id} is redeemed by 2 orders" in lines


def test_a_redeemed_packet_without_its_redemption_fails(
    app: Flask, spent: RedPacket, db_session: Session
) -> None:
    grant = _redemption(spent)
    db_session.execute(text("DELETE FROM rebate_grants WHERE id = :id"), {"id": grant.id})

    violations = red_packet_redeemed_once()

    assert (
        f"red packet {spent.id} is redeemed for order {grant.order_id} but has 0 redemption grants"
        in violations
    )
    assert any(v.startswith(f"order {grant.order_id} paid with a ") for v in violations), violations
