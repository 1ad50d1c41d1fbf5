"""A stateful property test of the rebate engine through its real services (no HTTP, no WeChat):
pay (with or without a red packet), duplicate notifications, partial and full refunds (some refused),
receipt and settlement on a simulated clock, expiry, withdrawals, new rule versions and funding.

After every step: every ledger check is clean (the rebate checks included), the campaign never spent
more than it was funded, the wallet buckets follow the grants, and a wallet with debt has nothing to
withdraw. Each example runs in its own savepoint inside the test's transaction and is rolled back.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import hypothesis.strategies as st
import pytest
from flask import Flask
from hypothesis import currently_in_test_context, event, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session, SessionTransaction

from app.audit.service import CLI
from app.campaigns.models import CampaignStatus
from app.campaigns.service import (
    create_campaign,
    deposit_budget,
    fund_campaign,
    new_rules_version,
    transition,
)
from app.core.db import utcnow
from app.core.errors import DomainError
from app.core.money import Money
from app.extensions import db
from app.ledger.accounts import campaign_accounts, consumer_accounts, merchant_accounts
from app.ledger.checks import run_checks
from app.ledger.models import EntryReason, JournalEntry
from app.ledger.service import post_entry
from app.merchants.models import Merchant
from app.orders.models import Order
from app.orders.service import record_lifecycle_event, register_order
from app.payments.discounts import resolve_discount
from app.payments.models import PaymentAttempt, Refund, RefundStatus
from app.payments.refunds import apply_refund_notification, request_refund
from app.payments.service import apply_transaction
from app.rebates.models import GrantStatus, RebateGrant
from app.rebates.service import DISCOUNT, settle_due
from app.red_packets.models import RedPacket, RedPacketStatus
from app.red_packets.service import expire_red_packets
from app.wallet.service import wallet_of
from tests.factories import make_consumer
from tests.rebates.builders import two_way
from tests.sandbox import Sandbox

WINDOW_DAYS = 7  # the merchant's after-sales window (the default)
BUDGET_EXHAUSTED = "budget exhausted"
MERCHANT_SIDE = {"issuer_merchant", DISCOUNT}
TRIGGER, PACKET_VALID_DAYS = 20_000, 30
TOTALS = st.one_of(
    st.sampled_from([4_999, 5_000, 10_000, TRIGGER, 60_000, 150_000]),
    st.integers(min_value=1, max_value=200_000),
)


def rules(issuer_bp: int = 1000, buyer_bp: int = 500) -> dict[str, Any]:
    """The seed two-way rule (its worst case is 160 yuan a packet) and a 2% buyer rebate from 100 yuan."""
    return {
        "rules": [
            two_way(
                priority=10,
                issuer_rate_bp=issuer_bp,
                buyer_rate_bp=buyer_bp,
                packet_valid_days=PACKET_VALID_DAYS,
            ),
            {
                "id": "ratio",
                "kind": "ratio",
                "priority": 5,
                "stacking": "combinable",
                "rate_bp": 200,
                "min_order_fen": 10_000,
            },
        ]
    }


@dataclass
class PaidOrder:
    id: int
    out_order_no: str
    consumer_id: int
    total: int
    paid: int
    resource: dict[str, Any]
    refunded: int = 0
    received: bool = False


@dataclass
class World:
    """What outlives the examples: the merchant and its consumers (made once, in the test's savepoint)."""

    merchant: Merchant
    consumers: list[int]
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


def _label(text: str) -> None:
    """Count what the examples reached (``--hypothesis-show-statistics``); scripted runs skip it."""
    if currently_in_test_context():
        event(text)


def _grants() -> list[RebateGrant]:
    return list(
        db.session.scalars(
            select(RebateGrant).order_by(RebateGrant.id).execution_options(populate_existing=True)
        )
    )


def _entry_count() -> int:
    return int(db.session.scalar(select(func.count(JournalEntry.id))) or 0)


def make_machine(world: World) -> type[RuleBasedStateMachine]:
    merchant = world.merchant

    class RebateLifecycle(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            # One savepoint per example, rolled back in teardown: every example starts from the world.
            self.savepoint: SessionTransaction = db.session.begin_nested()
            self.clock: datetime = utcnow()
            self.orders: list[PaidOrder] = []
            self.in_flight: list[int] = []  # refund ids requested, not yet answered by WeChat
            self.funded = 0
            self.withdrawn: Counter[int] = Counter()
            deposit = deposit_budget(
                key=str(next(world.numbers)), amount=Money(10_000_000), merchant_id=merchant.id
            )
            assert deposit
            self.campaign = create_campaign(
                merchant_id=merchant.id,
                name="stateful",
                starts_at=self.clock - timedelta(minutes=1),
                ends_at=self.clock + timedelta(days=365),
                rules=rules(),
                actor=CLI,
            )
            transition(
                merchant_id=merchant.id, campaign_id=self.campaign.id, to=CampaignStatus.ACTIVE, actor=CLI
            )
            self._fund(40_000)

        def teardown(self) -> None:
            self.savepoint.rollback()

        # ------------------------------------------------------------ helpers

        def _fund(self, fen: int) -> None:
            fund_campaign(
                merchant_id=merchant.id,
                campaign_id=self.campaign.id,
                amount=Money(fen),
                source="merchant",
                key=f"fund:{next(world.numbers)}",
                actor=CLI,
            )
            self.funded += fen

        def _skips(self) -> int:
            db.session.refresh(self.campaign)
            return int((self.campaign.skip_stats or {}).get(BUDGET_EXHAUSTED, 0))

        def _live_packets(self) -> list[RedPacket]:
            return list(
                db.session.scalars(
                    select(RedPacket).where(RedPacket.status == RedPacketStatus.ISSUED).order_by(RedPacket.id)
                )
            )

        def _refund(self, order: PaidOrder, share: int, *, now: bool) -> None:
            row = db.session.get(Order, order.id, populate_existing=True)
            assert row is not None
            left = row.paid_amount.fen - row.refund_committed.fen
            if left <= 0:
                return
            refund, created = request_refund(
                merchant_id=merchant.id,
                out_order_no=order.out_order_no,
                out_refund_no=f"RF-{next(world.numbers)}",
                amount=Money(max(1, left * share // 100)),
                reason=None,
            )
            assert created
            if now:
                self._answer_refund(refund.id, succeeded=True)
            else:
                self.in_flight.append(refund.id)

        def _receive(self, orders: list[PaidOrder]) -> None:
            for order in orders:
                record_lifecycle_event(
                    merchant_id=merchant.id,
                    out_order_no=order.out_order_no,
                    type="received",
                    occurred_at=utcnow(),
                    after_sale_id=None,
                )
                order.received = True

        def _settle(self, days: int) -> None:
            """Advance the clock and sweep: due grants (received, window passed, no refund in flight),
            and only those, become available."""
            self.clock = max(self.clock, utcnow()) + timedelta(days=days)
            settle_due(now=self.clock)
            for grant in _grants():
                if grant.consumer_id is None:
                    continue
                order = db.session.get(Order, grant.order_id, populate_existing=True)
                assert order is not None
                due = (
                    order.received_at is not None
                    and order.received_at + timedelta(days=WINDOW_DAYS) <= self.clock
                    and order.refund_committed == order.refunded
                )
                if due:
                    assert grant.status is GrantStatus.AVAILABLE, grant.id
                    _label("settle: a grant available")
                elif grant.status is GrantStatus.AVAILABLE:
                    assert grant.settled_at is not None and order.received_at is not None

        def _withdraw(self, consumer_id: int, share: int) -> None:
            """What the wallet read shows as withdrawable is what settled grants still hold, less what
            was withdrawn and what is owed (nothing while in debt); then move ``share`` % of it to
            withdrawing, as the payout request will (so later clawbacks can meet an empty wallet)."""
            shown = wallet_of(merchant_id=merchant.id, consumer_id=consumer_id)
            wallet = consumer_accounts(merchant.id, consumer_id)
            assert shown.available == wallet.available.balance
            assert shown.debt.fen == max(0, -wallet.debt.balance.fen)
            settled = sum(
                g.amount.fen - g.reversed.fen
                for g in _grants()
                if g.consumer_id == consumer_id and g.status is GrantStatus.AVAILABLE
            )
            assert shown.available.fen + shown.withdrawing.fen - shown.debt.fen == settled
            if shown.debt.fen:
                assert shown.available.fen == 0
            amount = shown.available.fen * share // 100
            if amount <= 0:
                return
            post_entry(
                key=f"withdraw:{next(world.numbers)}",
                reason=EntryReason.WITHDRAW_REQUEST,
                cause_type="withdrawal",
                cause_id=str(consumer_id),
                lines=[(wallet.available, Money(-amount)), (wallet.withdrawing, Money(amount))],
                merchant_id=merchant.id,
            )
            self.withdrawn[consumer_id] += amount
            _label("withdraw")

        def check_all(self) -> None:
            """Every invariant, for scripted runs of the machine."""
            self.ledger_checks_clean()
            self.campaign_within_budget()
            self.wallets_follow_grants()

        # ------------------------------------------------------------ steps

        def _pay(self, consumer_id: int, total: int, packet: RedPacket | None) -> None:
            """Register an order, apply the packet through the payment seam, and apply WeChat's SUCCESS."""
            order, created = register_order(
                merchant=merchant,
                document={
                    "out_order_no": f"ST-{next(world.numbers)}",
                    "consumer": {"id": consumer_id},
                    "total_fen": Money(total),
                    "items": [
                        {
                            "sku": "TEA-1",
                            "name": "Oolong",
                            "category": "tea",
                            "quantity": 1,
                            "unit_price_fen": Money(total),
                        }
                    ],
                },
            )
            assert created
            if packet is not None and total < packet.min_spend.fen:
                try:
                    resolve_discount(order, packet.id)
                except DomainError as exc:
                    assert exc.status == 422
                else:
                    raise AssertionError("a red packet was accepted below its minimum spend")
                packet = None
            discount = resolve_discount(order, packet.id if packet is not None else None)
            payable = order.total - discount.amount
            attempt = PaymentAttempt(
                merchant_id=merchant.id,
                order_id=order.id,
                out_trade_no=f"HL{order.id:08d}P1",
                appid=merchant.mp_appid or "",
                payer_openid="o-stateful",
                amount=payable,
                discount=discount.amount,
                red_packet_id=discount.red_packet_id,
                expires_at=utcnow() + timedelta(minutes=30),
            )
            db.session.add(attempt)
            db.session.flush()
            # The decrypted resource of a verified TRANSACTION.SUCCESS, as the notification path passes it.
            resource = {
                "mchid": merchant.mchid,
                "appid": merchant.mp_appid,
                "out_trade_no": attempt.out_trade_no,
                "transaction_id": f"42000{order.id:023d}",
                "trade_state": "SUCCESS",
                "amount": {"total": payable.fen, "payer_total": payable.fen, "currency": "CNY"},
            }
            # What the campaign could grant, to prove nothing is lost silently: granted or counted as skipped.
            proposals = int(total >= TRIGGER) + int(total >= 10_000 and total * 200 // 10_000 > 0)
            skips_before = self._skips()

            applied = apply_transaction(merchant=merchant, resource=resource, source="notification")

            assert applied.ok and applied.changed, applied
            self.orders.append(
                PaidOrder(order.id, order.out_order_no, consumer_id, total, payable.fen, resource)
            )
            issued = db.session.scalar(
                select(func.count(RedPacket.id)).where(RedPacket.source_order_id == order.id)
            )
            ratio = db.session.scalar(
                select(func.count(RebateGrant.id)).where(
                    RebateGrant.order_id == order.id, RebateGrant.rule_id == "ratio"
                )
            )
            skipped = self._skips() - skips_before
            assert (issued or 0) + (ratio or 0) + skipped == proposals
            _label("pay: a grant skipped, budget exhausted" if skipped else "pay: nothing skipped")
            if packet is None:
                return
            _label("pay: red packet spent")
            db.session.refresh(packet)
            assert (packet.status, packet.reserved.fen, packet.order_id) == (
                RedPacketStatus.REDEEMED,
                0,
                order.id,
            )
            legs = {
                g.beneficiary: g.amount.fen
                for g in _grants()
                if g.order_id == order.id and g.red_packet_id == packet.id
            }
            base = min(total, packet.max_order.fen)
            expected = {
                DISCOUNT: min(packet.face_value.fen, total - 1),
                "issuer_merchant": base * packet.issuer_rate_bp // 10_000,
                "buyer": base * packet.buyer_rate_bp // 10_000,
            }
            assert legs == {k: v for k, v in expected.items() if v > 0}

        def _answer_refund(self, refund_id: int, succeeded: bool) -> None:
            refund = db.session.get(Refund, refund_id)
            assert refund is not None
            status = "SUCCESS" if succeeded else "CLOSED"
            assert apply_refund_notification(
                merchant=merchant,
                event_type=f"REFUND.{status}",
                resource={
                    "mchid": merchant.mchid,
                    "out_refund_no": refund.wechat_refund_no,
                    "refund_status": status,
                    "amount": {"refund": refund.amount.fen},
                },
            )
            assert refund.status is (RefundStatus.SUCCEEDED if succeeded else RefundStatus.CLOSED)
            _label(f"refund: {status}")
            if not succeeded:
                return
            order = next(o for o in self.orders if o.id == refund.order_id)
            order.refunded += refund.amount.fen
            # Every grant of the order is reversed pro rata to what was refunded in all (floor).
            for grant in _grants():
                if grant.order_id == order.id:
                    target = grant.amount.fen * order.refunded // order.paid
                    assert grant.reversed.fen == target, (grant.id, grant.reversed, target)

        # ------------------------------------------------------------ steps

        @initialize(data=st.data(), total=st.sampled_from([TRIGGER, 60_000, 150_000]))
        def first_order(self, data: st.DataObject, total: int) -> None:
            """Every example starts with an order that earns its buyer a red packet."""
            self._pay(data.draw(st.sampled_from(world.consumers), label="consumer"), total, None)

        @rule(data=st.data(), total=TOTALS)
        def pay(self, data: st.DataObject, total: int) -> None:
            """A consumer pays an order without a red packet; WeChat confirms it."""
            self._pay(data.draw(st.sampled_from(world.consumers), label="consumer"), total, None)

        @precondition(lambda self: self._live_packets())
        @rule(data=st.data(), total=TOTALS)
        def pay_with_packet(self, data: st.DataObject, total: int) -> None:
            """A consumer spends one of their red packets on an order (refused below its minimum spend)."""
            packet = data.draw(st.sampled_from(self._live_packets()), label="packet")
            self._pay(packet.consumer_id, total, packet)

        @precondition(lambda self: self.orders)
        @rule(data=st.data())
        def duplicate_notification(self, data: st.DataObject) -> None:
            """WeChat delivers the same TRANSACTION.SUCCESS again: answered, and nothing moves."""
            order = data.draw(st.sampled_from(self.orders), label="order")
            entries, grants = _entry_count(), len(_grants())
            applied = apply_transaction(merchant=merchant, resource=order.resource, source="notification")
            assert (applied.ok, applied.changed) == (True, False)
            assert (_entry_count(), len(_grants())) == (entries, grants)

        @precondition(lambda self: self.orders)
        @rule(
            data=st.data(),
            share=st.sampled_from([1, 3, 10, 50, 100]),
            answer=st.sampled_from(["now", "later"]),
        )
        def refund(self, data: st.DataObject, share: int, answer: str) -> None:
            """The shop refunds ``share`` % of what is still refundable (100 = the rest); WeChat answers
            SUCCESS at once, or later (settlement waits while a refund is in flight)."""
            self._refund(data.draw(st.sampled_from(self.orders), label="order"), share, now=answer == "now")

        @precondition(lambda self: self.in_flight)
        @rule(data=st.data(), succeeded=st.booleans())
        def refund_answered(self, data: st.DataObject, succeeded: bool) -> None:
            """WeChat's REFUND.SUCCESS (grants clawed back pro rata) or REFUND.CLOSED (refundable again)."""
            refund_id = data.draw(st.sampled_from(self.in_flight), label="refund")
            self.in_flight.remove(refund_id)
            self._answer_refund(refund_id, succeeded)

        @rule(data=st.data(), days=st.sampled_from([0, 6, 8, 31]), every_order=st.booleans())
        def received_and_settle(self, data: st.DataObject, days: int, every_order: bool) -> None:
            """The shop reports one order (or every order) received — its window starts — then time passes
            and the sweep settles."""
            waiting = [o for o in self.orders if not o.received]
            if waiting and not every_order:
                waiting = [data.draw(st.sampled_from(waiting), label="order")]
            self._receive(waiting)
            self._settle(days)

        @rule()
        def expire(self) -> None:
            """The expiry sweep at the simulated time: unused packets past validity give their reserve back."""
            expire_red_packets(now=self.clock)
            stale = db.session.scalar(
                select(func.count(RedPacket.id)).where(
                    RedPacket.status == RedPacketStatus.ISSUED, RedPacket.valid_until <= self.clock
                )
            )
            assert stale == 0

        @rule(data=st.data(), share=st.sampled_from([100, 50]))
        def withdraw(self, data: st.DataObject, share: int) -> None:
            """Withdraw-ready check through the wallet read, then a withdrawal of ``share`` % of it."""
            self._withdraw(data.draw(st.sampled_from(world.consumers), label="consumer"), share)

        @rule(issuer_bp=st.sampled_from([0, 500, 1000, 2500]), buyer_bp=st.sampled_from([0, 500, 1500]))
        def new_rules(self, issuer_bp: int, buyer_bp: int) -> None:
            """A new rules version: packets issued before keep the rates (and the reserve) they had."""
            new_rules_version(
                merchant_id=merchant.id,
                campaign_id=self.campaign.id,
                rules=rules(issuer_bp, buyer_bp),
                actor=CLI,
            )

        @rule(fen=st.sampled_from([1, 16_000, 50_000]))
        def fund(self, fen: int) -> None:
            self._fund(fen)

        # ------------------------------------------------------------ after every step

        @invariant()
        def ledger_checks_clean(self) -> None:
            assert [(r.name, r.violations) for r in run_checks() if r.violations] == []

        @invariant()
        def campaign_within_budget(self) -> None:
            accounts = campaign_accounts(merchant.id, self.campaign.id)
            kept = sum(g.amount.fen - g.reversed.fen for g in _grants() if g.campaign_id == self.campaign.id)
            budget, reserved = accounts.budget.balance.fen, accounts.reserved.balance.fen
            assert budget >= 0 and reserved >= 0
            assert kept + reserved <= self.funded
            assert budget == self.funded - kept - reserved
            live = sum(
                packet.reserved.fen
                for packet in db.session.scalars(
                    select(RedPacket)
                    .where(RedPacket.campaign_id == self.campaign.id)
                    .execution_options(populate_existing=True)
                )
                if packet.status in (RedPacketStatus.ISSUED, RedPacketStatus.RESERVED)
            )
            assert live == reserved

        @invariant()
        def wallets_follow_grants(self) -> None:
            grants = _grants()
            for consumer_id in world.consumers:
                wallet = consumer_accounts(merchant.id, consumer_id)
                pending, available = wallet.pending.balance.fen, wallet.available.balance.fen
                withdrawing, debt = wallet.withdrawing.balance.fen, wallet.debt.balance.fen
                assert pending >= 0 and available >= 0 and withdrawing >= 0 and debt <= 0
                mine = [g for g in grants if g.consumer_id == consumer_id]
                net = {
                    status: sum(g.amount.fen - g.reversed.fen for g in mine if g.status is status)
                    for status in GrantStatus
                }
                assert pending == net[GrantStatus.PENDING]
                assert available + withdrawing + debt == net[GrantStatus.AVAILABLE]
                assert withdrawing == self.withdrawn[consumer_id]
                assert not (available > 0 and debt < 0), "debt is repaid before anything is withdrawable"
                if debt < 0:
                    _label("a consumer in debt")
            merchant_net = sum(
                g.amount.fen - g.reversed.fen for g in grants if g.beneficiary in MERCHANT_SIDE
            )
            assert merchant_accounts(merchant.id).rebate.balance.fen == merchant_net

    return RebateLifecycle


@pytest.fixture
def world(app: Flask, sandbox: Sandbox, db_session: Session) -> World:
    merchant = sandbox.onboard("stateful-tea")
    assert merchant.after_sales_window_days == WINDOW_DAYS
    return World(merchant, [make_consumer(merchant).id, make_consumer(merchant).id])


def test_rebate_lifecycle_keeps_every_invariant(world: World) -> None:
    run_state_machine_as_test(
        make_machine(world),
        settings=settings(max_examples=25, stateful_step_count=25, deadline=None),
    )


def test_clawback_after_a_withdrawal_becomes_debt_repaid_by_the_next_settlement(world: World) -> None:
    """The path random runs rarely reach, scripted through the same machine and its invariants:
    settle, withdraw everything, refund half (the clawback finds an empty wallet), settle again."""
    machine = make_machine(world)()
    buyer = world.consumers[0]
    try:
        machine._pay(buyer, 60_000, None)  # 2% ratio rebate: 1 200 fen pending, and a red packet
        machine._receive(machine.orders)
        machine._settle(WINDOW_DAYS + 1)
        machine._withdraw(buyer, 100)
        machine.check_all()
        machine._refund(machine.orders[0], 50, now=True)  # 600 fen clawed back from an empty wallet
        machine.check_all()
        assert wallet_of(merchant_id=world.merchant.id, consumer_id=buyer).debt == Money(600)
        machine._pay(buyer, 60_000, None)
        machine._receive(machine.orders[1:])
        machine._settle(WINDOW_DAYS + 1)
        machine.check_all()
        wallet = wallet_of(merchant_id=world.merchant.id, consumer_id=buyer)
        assert (wallet.debt, wallet.available, wallet.withdrawing) == (Money(0), Money(600), Money(1200))
        machine._withdraw(buyer, 100)
        machine.check_all()
    finally:
        machine.teardown()
