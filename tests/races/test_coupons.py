"""Coupon races: 50 followers at once against a stock of 10 — exactly 10 coupons, the budget never exceeded;
the same when the budget covers fewer, and when WeChat's stock is the smaller one (known, or learnt from
WeChat's answers while sending)."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import pytest
from sqlalchemy import func, select

from app.core.db import utcnow
from app.core.money import Money
from app.coupons.models import Channel, Coupon, CouponKind, CouponStatus, CouponStock
from app.coupons.service import create_stock, deliver_coupon, issue_coupon, issue_on_follow, link_wechat_size
from app.extensions import db
from app.ledger.models import AccountKind
from app.merchants.models import Merchant
from app.rebates.models import RebateGrant
from tests.factories import make_consumer
from tests.races.conftest import Answer, Race

pytestmark = pytest.mark.race

FOLLOWERS = 50
ROUNDS = 3
FACE = 1000
TWO_WAY = {
    "rules": [
        {
            "id": "two-way",
            "kind": "two_way",
            "priority": 10,
            "stacking": "combinable",
            "trigger_min_order_fen": 20000,
            "packet_value_fen": FACE,
            "packet_min_spend_fen": 5000,
            "packet_valid_days": 30,
            "issuer_rate_bp": 1000,
            "buyer_rate_bp": 500,
            "max_order_fen": 10000,
        }
    ]
}
WORST_CASE = FACE + 1000 + 500


def _stock(race: Race, campaign_id: int, max_coupons: int) -> int:
    now = utcnow()
    with race.context():
        stock = create_stock(
            merchant_id=race.merchant_id,
            campaign_id=campaign_id,
            kind=CouponKind.VOUCHER,
            name="Race ¥10",
            face_value=None,
            min_spend=None,
            valid_from=now - timedelta(minutes=1),
            valid_until=now + timedelta(days=30),
            max_coupons=max_coupons,
            channels=["follow"],
            rule_id="two-way",
        )
        return stock.id


def _followers(race: Race, n: int) -> list[int]:
    """``n`` consumers who follow the official account (each a sandbox user with that openid)."""
    with race.context():
        merchant = db.session.get(Merchant, race.merchant_id)
        assert merchant is not None and merchant.oa_appid
        ids = [make_consumer(merchant).id for _ in range(n)]
        oa_appid = merchant.oa_appid
        db.session.commit()
    for consumer_id in ids:
        race.sandbox.user(id=f"follower{consumer_id}", openids={oa_appid: _openid(consumer_id)})
    return ids


def _openid(consumer_id: int) -> str:
    return f"o-follower-{consumer_id:08d}"


def _follow(race: Race, consumer_id: int) -> Answer:
    def issue() -> int | None:
        coupon = issue_on_follow(race.merchant_id, consumer_id, _openid(consumer_id), None)
        return None if coupon is None else coupon.id

    return race.call(issue)


def _coupons(race: Race, stock_id: int) -> dict[CouponStatus, int]:
    with race.context():
        return {
            status: n
            for status, n in db.session.execute(
                select(Coupon.status, func.count(Coupon.id))
                .where(Coupon.stock_id == stock_id)
                .group_by(Coupon.status)
            )
        }


def _race_follows(race: Race, stock_id: int) -> list[Answer]:
    followers = _followers(race, FOLLOWERS)
    answers = race.race([partial(_follow, race, consumer_id) for consumer_id in followers])
    race.assert_clean(answers)
    return answers


def _issued(answers: list[Answer]) -> int:
    return sum(1 for a in answers if a.ok and a.value is not None)


def test_fifty_follows_against_a_stock_of_ten_issue_exactly_ten(race: Race) -> None:
    campaign_id = race.campaign(TWO_WAY, 100 * WORST_CASE)

    def round_(i: int) -> None:
        stock_id = _stock(race, campaign_id, 10)
        budget = race.balance(AccountKind.CAMPAIGN_BUDGET, campaign_id)
        reserved = race.balance(AccountKind.CAMPAIGN_RESERVED, campaign_id)
        answers = _race_follows(race, stock_id)
        busy = sum(1 for a in answers if a.busy)
        assert _issued(answers) == 10, [str(a) for a in answers if not a.ok][:3]
        assert busy <= FOLLOWERS - 10
        assert _coupons(race, stock_id) == {CouponStatus.RESERVED: 10}
        assert race.balance(AccountKind.CAMPAIGN_BUDGET, campaign_id) == budget - 10 * WORST_CASE
        assert race.balance(AccountKind.CAMPAIGN_RESERVED, campaign_id) == reserved + 10 * WORST_CASE

    race.rounds(round_, n=ROUNDS)


def test_a_budget_for_seven_issues_seven_and_never_goes_negative(race: Race) -> None:
    def round_(i: int) -> None:
        campaign_id = race.campaign(TWO_WAY, 7 * WORST_CASE + WORST_CASE // 2)
        stock_id = _stock(race, campaign_id, 10)
        answers = _race_follows(race, stock_id)
        assert _issued(answers) == 7
        assert _coupons(race, stock_id) == {CouponStatus.RESERVED: 7}
        assert race.balance(AccountKind.CAMPAIGN_BUDGET, campaign_id) == WORST_CASE // 2
        with race.context():
            stock = db.session.get(CouponStock, stock_id)
            assert stock is not None and stock.issued == 7  # a refused reservation gave its place back

    race.rounds(round_, n=ROUNDS)


def test_wechats_smaller_stock_wins_whether_known_or_learnt_from_its_answers(race: Race) -> None:
    campaign_id = race.campaign(TWO_WAY, 100 * WORST_CASE)

    def round_(i: int) -> None:
        # Known: WeChat's stock holds 5 (the merchant's portal says so); ours 10. The smaller issues.
        stock_id = _stock(race, campaign_id, 10)
        with race.context():
            link_wechat_size(merchant_id=race.merchant_id, stock_id=stock_id, wechat_max_coupons=5)
            db.session.commit()
        answers = _race_follows(race, stock_id)
        assert _issued(answers) == 5
        assert _coupons(race, stock_id) == {CouponStatus.RESERVED: 5}

        # Learnt: WeChat's stock was cut to 6 behind our back; 10 are reserved, WeChat sends 6 and answers
        # NOT_ENOUGH to the rest: those fail, their places and reservations come back, and WeChat's size is
        # recorded so nothing more is issued.
        stock_id = _stock(race, campaign_id, 10)
        with race.context():
            wechat_id = db.session.get(CouponStock, stock_id).wechat_stock_id  # type: ignore[union-attr]
        with race.sandbox.world.lock:
            race.sandbox.world.state.stocks[str(wechat_id)].max_coupons = 6
        reserved_before = race.balance(AccountKind.CAMPAIGN_RESERVED, campaign_id)
        answers = _race_follows(race, stock_id)
        assert _issued(answers) == 10
        with race.context():
            ids = list(db.session.scalars(select(Coupon.id).where(Coupon.stock_id == stock_id)))
        sends = race.race([partial(race.call, deliver_coupon, coupon_id) for coupon_id in ids])
        race.assert_clean(sends)
        assert _coupons(race, stock_id) == {CouponStatus.SENT: 6, CouponStatus.FAILED: 4}
        assert race.balance(AccountKind.CAMPAIGN_RESERVED, campaign_id) == reserved_before + 6 * WORST_CASE
        with race.context():
            stock = db.session.get(CouponStock, stock_id)
            assert stock is not None and (stock.wechat_max_coupons, stock.issued, stock.limit) == (6, 6, 6)
        assert _issued(_race_follows(race, stock_id)) == 0
        received = sum(1 for c in race.sandbox.world.state.coupons.values() if c.stock_id == str(wechat_id))
        assert received == 6

    race.rounds(round_, n=ROUNDS)


def test_a_payment_and_its_coupon_use_arriving_together_book_once(race: Race) -> None:
    """TRANSACTION.SUCCESS (naming the voucher in promotion_detail) and COUPON.USE race: whichever is second
    books the voucher's cost and legs — exactly once, never zero times."""
    campaign_id = race.campaign(TWO_WAY, 100 * WORST_CASE)
    stock_id = _stock(race, campaign_id, 1000)

    def round_(i: int) -> None:
        buyer = race.buyer()
        with race.context():
            coupon = issue_coupon(
                merchant_id=race.merchant_id,
                stock_id=stock_id,
                consumer_id=buyer.consumer_id,
                channel=Channel.DIRECT,
                issue_key=f"race-use:{i}",
            )
            db.session.commit()
            coupon_id = coupon.id
        with race.context():
            assert deliver_coupon(coupon_id) is CouponStatus.SENT
        order_id, _ = race.register(buyer, 6000)
        assert race.pay(buyer, order_id).ok
        (out_trade_no,) = race.out_trade_nos(order_id)
        paid = race.sandbox.admin.post(
            f"/_sandbox/transactions/{out_trade_no}/pay", json={"mchid": race.mchid, "deliver": False}
        )
        assert paid.status_code == 200 and paid.get_json()["promotion_detail"]
        listed = race.sandbox.get(f"/notifications?owner={race.mchid}")["notifications"]
        payment = next(n for n in listed if n["resource"].get("out_trade_no") == out_trade_no)
        use = next(
            n
            for n in listed
            if n["event_type"] == "COUPON.USE"
            and n["resource"]["consume_information"]["transaction_id"]
            == payment["resource"]["transaction_id"]
        )
        forger = race.forger
        signed_payment = forger.signed(payment["resource"])
        signed_use = forger.signed(use["resource"], event_type="COUPON.USE")

        def deliver(path: str, signed: tuple[dict[str, str], bytes]) -> Answer:
            client = race.app.test_client(use_cookies=False)
            return Answer.of(client.post(f"/wechat/{race.slug}/{path}", data=signed[1], headers=signed[0]))

        answers = race.staggered(
            i, partial(deliver, "pay/notify", signed_payment), partial(deliver, "coupons/notify", signed_use)
        )
        race.assert_clean(answers)
        for answer, signed, path in zip(
            answers, (signed_payment, signed_use), ("pay/notify", "coupons/notify"), strict=True
        ):
            if answer.busy:  # SQLite said busy: WeChat would retry it
                assert deliver(path, signed).ok
        with race.context():
            coupon = db.session.get(Coupon, coupon_id)
            assert coupon is not None and coupon.status is CouponStatus.USED and coupon.booked_at is not None
            grants = db.session.scalars(select(RebateGrant).where(RebateGrant.coupon_id == coupon_id)).all()
            assert sorted((g.beneficiary, g.amount.fen) for g in grants) == [
                ("buyer", 300),
                ("coupon_discount", FACE),
                ("issuer_merchant", 600),
            ]

    race.rounds(round_, n=10)


def test_buyers_legs_racing_for_the_last_coupon_one_gets_it_the_others_cash(race: Race) -> None:
    """A rule pays the buyer's leg as a coupon of a stock with one place (a new one each round); four buyers spend
    their packets at once (WeChat's notifications together, each on its own connection): exactly one leg
    becomes the coupon, the other three are paid in cash, and nothing is reserved twice."""
    from app.audit.service import CLI
    from app.campaigns.service import issue_staff_red_packet, new_rules_version
    from app.orders.models import Order, OrderStatus

    buyers_per_round, order_fen, leg_fen = 4, 10000, 500  # 5% of ¥100
    campaign_id = race.campaign(TWO_WAY, 100 * WORST_CASE)

    def stock_of_one() -> int:
        """A new stock with one place, and the rule's buyer leg paid from it (a new rules version)."""
        now = utcnow()
        with race.context():
            stock = create_stock(
                merchant_id=race.merchant_id,
                campaign_id=campaign_id,
                kind=CouponKind.VOUCHER,
                name="Thanks ¥3",
                face_value=Money(300),
                min_spend=Money(3000),
                valid_from=now - timedelta(minutes=1),
                valid_until=now + timedelta(days=30),
                max_coupons=1,
                channels=[],
            )
            rule = TWO_WAY["rules"][0] | {"buyer_leg": "coupon", "buyer_leg_stock_id": stock.id}
            new_rules_version(
                merchant_id=race.merchant_id, campaign_id=campaign_id, rules={"rules": [rule]}, actor=CLI
            )
            db.session.commit()
            return stock.id

    def round_(i: int) -> None:
        stock_id = stock_of_one()
        paying = []
        for _ in range(buyers_per_round):
            buyer = race.buyer()
            with race.context():
                packet = issue_staff_red_packet(
                    merchant_id=race.merchant_id,
                    campaign_id=campaign_id,
                    consumer_id=buyer.consumer_id,
                    rule_id="two-way",
                    key=f"race-leg-{race.next()}",
                    actor=CLI,
                )
                db.session.commit()
                packet_id = packet.id
            order_id, _ = race.register(buyer, order_fen)
            assert race.pay(buyer, order_id, packet_id).ok
            [out_trade_no] = race.out_trade_nos(order_id)
            paying.append((order_id, out_trade_no))
        signed = [race.forger.signed(race.forger.transaction(no, order_fen - FACE)) for _, no in paying]

        answers = race.race([partial(race.notify, n) for n in signed])
        race.assert_clean(answers)
        for (_, no), answer in zip(paying, answers, strict=True):
            if not answer.ok:  # SQLite's busy answers: WeChat delivers again
                assert race.notify(race.forger.signed(race.forger.transaction(no, order_fen - FACE))).ok

        order_ids = [o for o, _ in paying]
        with race.context():
            paid = db.session.scalar(
                select(func.count(Order.id)).where(Order.id.in_(order_ids), Order.status == OrderStatus.PAID)
            )
            cash_legs = db.session.scalars(
                select(RebateGrant.amount).where(
                    RebateGrant.order_id.in_(order_ids), RebateGrant.beneficiary == "buyer"
                )
            ).all()
            leg_coupons = db.session.scalar(
                select(func.count(Coupon.id)).where(
                    Coupon.stock_id == stock_id, Coupon.issue_key.like("buyer-leg:%")
                )
            )
            issued = db.session.get(CouponStock, stock_id)
            assert issued is not None
            counter = issued.issued
        assert {
            "paid": paid,
            "cash legs": sorted(m.fen for m in cash_legs),
            "leg coupons": leg_coupons,
            "stock counter": counter,
        } == {
            "paid": buyers_per_round,
            "cash legs": [leg_fen] * (buyers_per_round - 1),
            "leg coupons": 1,
            "stock counter": 1,
        }

    race.rounds(round_, n=ROUNDS)
