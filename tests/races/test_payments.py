"""Payment races: one red packet spent on two orders at once, a red packet spent while it expires, and a
late payment notification against the unpaid-order close sweep."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial

import pytest
from sqlalchemy import select

from app.core.db import utcnow
from app.core.money import Money
from app.events.models import DomainEvent
from app.extensions import db
from app.ledger.service import find_entry
from app.orders.models import Order
from app.payments.models import PaymentAttempt
from app.payments.service import close_expired_orders
from app.rebates.models import RebateGrant
from app.red_packets.models import RedPacket
from app.red_packets.service import expire_red_packets, issue_red_packet
from app.reviews.models import ReviewItem
from tests.races.conftest import ROUNDS, Buyer, Race
from tests.rebates.builders import two_way

pytestmark = pytest.mark.race

TWO_WAY = {"rules": [two_way()]}
FACE_FEN, WORST_CASE_FEN, ORDER_FEN = 1000, 16_000, 6000
BUYER_LEG_FEN = ORDER_FEN * 500 // 10_000  # the two-way rule's buyer rate, 5 %


def _packet_campaign(race: Race) -> tuple[int, int]:
    """A two-way campaign whose budget can reserve a packet for every round: (campaign, rule version)."""
    campaign_id = race.campaign(TWO_WAY, budget_fen=(ROUNDS + 5) * WORST_CASE_FEN)
    return campaign_id, race.rule_version(campaign_id)


def _packet(
    race: Race, campaign: tuple[int, int], buyer: Buyer, valid_for: timedelta
) -> tuple[int, datetime]:
    """A ¥10 packet (min spend ¥50) for ``buyer``, its worst case reserved: (packet id, valid until)."""
    campaign_id, version_id = campaign
    with race.context():
        now = utcnow()
        packet = issue_red_packet(
            merchant_id=race.merchant_id,
            campaign_id=campaign_id,
            rule_version_id=version_id,
            rule_id="two-way",
            consumer_id=buyer.consumer_id,
            face_value=Money(FACE_FEN),
            min_spend=Money(5000),
            valid_from=now - timedelta(minutes=1),
            valid_until=now + valid_for,
            issuer_rate_bp=1000,
            buyer_rate_bp=500,
            max_order=Money(100_000),
            worst_case_cost=Money(WORST_CASE_FEN),
            idempotency_key=f"issue:race:{race.next()}",
        )
        assert packet is not None
        db.session.commit()
        return packet.id, packet.valid_until


def _orders(race: Race, order_ids: list[int]) -> list[tuple[str, int]]:
    """(status, discount fen) of each order."""
    with race.context():
        found = {o.id: o for o in db.session.scalars(select(Order).where(Order.id.in_(order_ids)))}
        return [(found[i].status.value, found[i].discount.fen) for i in order_ids]


def _packet_state(race: Race, packet_id: int) -> tuple[str, int | None, int]:
    """(status, order it is reserved for or spent on, fen still reserved)."""
    with race.context():
        packet = db.session.get(RedPacket, packet_id)
        assert packet is not None
        return packet.status.value, packet.order_id, packet.reserved.fen


def _discounted_attempts(race: Race, packet_id: int) -> list[tuple[int, int]]:
    """(order, discount fen) of every payment attempt that spends the packet."""
    with race.context():
        rows = db.session.execute(
            select(PaymentAttempt.order_id, PaymentAttempt.discount)
            .where(PaymentAttempt.red_packet_id == packet_id)
            .order_by(PaymentAttempt.id)
        ).all()
        return [(order_id, discount.fen) for order_id, discount in rows]


def _redemptions(race: Race, packet_id: int) -> list[tuple[int, int]]:
    """(order, fen) of every redemption grant of the packet (the discount the campaign paid for)."""
    with race.context():
        rows = db.session.execute(
            select(RebateGrant.order_id, RebateGrant.amount).where(
                RebateGrant.red_packet_id == packet_id, RebateGrant.beneficiary == "red_packet_discount"
            )
        ).all()
        return [(order_id, amount.fen) for order_id, amount in rows]


def _user_pays_every_sheet(race: Race, order_ids: list[int]) -> list[str]:
    """The user pays every pay sheet they were given; the answers that were not a success."""
    failed = []
    for order_id in order_ids:
        for out_trade_no in race.out_trade_nos(order_id):
            paid = race.user_pays(out_trade_no)
            if not paid.ok:
                failed.append(f"{out_trade_no}: {paid}")
    return failed


def test_two_orders_paying_with_one_red_packet_one_gets_the_discount(race: Race) -> None:
    campaign = _packet_campaign(race)

    def one_round(_: int) -> None:
        buyer = race.buyer()
        packet_id = _packet(race, campaign, buyer, timedelta(days=30))[0]
        orders = [race.register(buyer, ORDER_FEN)[0] for _ in range(2)]

        answers = race.race([partial(race.pay, buyer, o, packet_id) for o in orders])
        race.assert_clean(answers)
        winners = [o for o, a in zip(orders, answers, strict=True) if a.ok]
        winner = winners[0] if len(winners) == 1 else None
        loser = next((a for a in answers if not a.ok), None)
        # A busy loser (SQLite) was told nothing about the packet; any other loser sees it reserved.
        told = None if loser is None or loser.busy else (loser.status, loser.details.get("status"))
        unpaid = _user_pays_every_sheet(race, orders)

        assert {
            "pay answered 200": len(winners),
            "discount offered": sorted(a.body["discount_fen"] for a in answers if a.ok),
            "loser told": told,
            "orders (status, discount)": _orders(race, orders),
            "packet": _packet_state(race, packet_id),
            "attempts spending it": _discounted_attempts(race, packet_id),
            "redemptions": _redemptions(race, packet_id),
            "sheets not paid": unpaid,
            "buyer's pending": race.wallet(buyer.consumer_id)["pending"],
        } == {
            "pay answered 200": 1,
            "discount offered": [FACE_FEN],
            "loser told": None if told is None else (409, "reserved"),
            "orders (status, discount)": [
                ("paid", FACE_FEN) if o == winner else ("pending_payment", 0) for o in orders
            ],
            "packet": ("redeemed", winner, 0),
            "attempts spending it": [(winner, FACE_FEN)],
            "redemptions": [(winner, FACE_FEN)],
            "sheets not paid": [],
            "buyer's pending": BUYER_LEG_FEN,
        }

    race.rounds(one_round)


def test_a_red_packet_spent_while_it_expires_ends_spent_or_expired_never_both(race: Race) -> None:
    campaign = _packet_campaign(race)

    def one_round(_: int) -> None:
        buyer = race.buyer()
        packet_id, valid_until = _packet(race, campaign, buyer, timedelta(minutes=2))
        order_id = race.register(buyer, ORDER_FEN)[0]

        # The sweep runs as the packet's validity ends; the consumer pays a moment before, by their clock.
        pay, sweep = race.race(
            [
                lambda: race.pay(buyer, order_id, packet_id),
                lambda: race.call(expire_red_packets, now=valid_until + timedelta(seconds=1)),
            ]
        )
        race.assert_clean([pay, sweep])
        unpaid = _user_pays_every_sheet(race, [order_id]) if pay.ok else []
        with race.context():
            released = find_entry(f"rp-expire:{packet_id}") is not None

        facts: dict[str, object] = {
            "pay": "ok" if pay.ok else ("busy" if pay.busy else (pay.status, pay.details.get("status"))),
            "packet": _packet_state(race, packet_id),
            "expiry released its reservation": released,
            "attempts spending it": _discounted_attempts(race, packet_id),
            "order (status, discount)": _orders(race, [order_id])[0],
            "redemptions": _redemptions(race, packet_id),
            "sheets not paid": unpaid,
        }
        spent: dict[str, object] = {
            "pay": "ok",
            "packet": ("redeemed", order_id, 0),
            "expiry released its reservation": False,
            "attempts spending it": [(order_id, FACE_FEN)],
            "order (status, discount)": ("paid", FACE_FEN),
            "redemptions": [(order_id, FACE_FEN)],
            "sheets not paid": [],
        }
        expired: dict[str, object] = {
            "pay": "busy" if pay.busy else (409, "expired"),
            "packet": ("expired", None, 0),
            "expiry released its reservation": True,
            "attempts spending it": [],
            "order (status, discount)": ("pending_payment", 0),
            "redemptions": [],
            "sheets not paid": [],
        }
        assert facts == (spent if pay.ok else expired)

    race.rounds(one_round)


def _trade_state(race: Race, out_trade_no: str) -> str:
    orders = race.sandbox.get("/state/orders")["orders"]
    (state,) = [o["status"] for o in orders if o["out_trade_no"] == out_trade_no and o["mchid"] == race.mchid]
    return str(state)


def test_a_late_payment_against_the_close_sweep_ends_paid_or_closed_never_both(race: Race) -> None:
    def one_round(round_no: int) -> None:
        buyer = race.buyer()
        order_id = race.register(buyer, 3000)[0]
        opened = race.pay(buyer, order_id)
        assert opened.ok, str(opened)
        (out_trade_no,) = race.out_trade_nos(order_id)
        later = utcnow() + timedelta(days=1)  # the sweep's clock: the time to pay has run out

        paid, swept = race.staggered(
            round_no, lambda: race.user_pays(out_trade_no), lambda: race.call(close_expired_orders, now=later)
        )
        race.assert_clean([swept])
        # The next sweep (every minute in production) finishes what a sweep that lost the race left open.
        again = race.call(close_expired_orders, now=later)
        race.assert_clean([again])

        with race.context():
            order = db.session.get(Order, order_id)
            assert order is not None
            events = sorted(
                db.session.scalars(
                    select(DomainEvent.type).where(
                        DomainEvent.subject_type == "order", DomainEvent.subject_id == order_id
                    )
                )
            )
            flagged = db.session.scalars(
                select(ReviewItem.kind).where(ReviewItem.reference.like(f"%{out_trade_no}"))
            ).all()
            facts = {
                "order": order.status.value,
                "closed_at set": order.closed_at is not None,
                "paid fen": order.paid_amount.fen,
                "events": events,
                "flagged for review": sorted(flagged),
            }
        money_taken = _trade_state(race, out_trade_no) == "SUCCESS"
        paid_order = {
            "order": "paid",
            "closed_at set": False,
            "paid fen": 3000,
            "events": ["order.paid"],
            "flagged for review": [],
        }
        closed_flagged = {
            "order": "closed",
            "closed_at set": True,
            "paid fen": 0,
            "events": ["order.closed"],
            "flagged for review": ["payment_mismatch"],
        }
        closed_unpaid = closed_flagged | {"flagged for review": []}
        assert paid.ok == money_taken, (
            f"the user was told {paid} but WeChat's trade is {_trade_state(race, out_trade_no)}"
        )
        if money_taken:
            assert facts in (paid_order, closed_flagged), f"WeChat took the money; Hongli has {facts}"
        else:
            assert facts == closed_unpaid

    race.rounds(one_round)
