"""Rebate races: a refund against the settlement of the rebate it reverses, and parallel orders against a
campaign budget that can pay only a few of them."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import pytest
from sqlalchemy import func, select

from app.core.db import utcnow
from app.core.money import Money
from app.extensions import db
from app.ledger.models import AccountKind, EntryReason, JournalEntry, LedgerAccount, Posting
from app.merchants.models import Merchant
from app.orders.models import Order, OrderStatus
from app.payments.models import AttemptStatus, PaymentAttempt, Refund
from app.rebates.models import RebateGrant
from app.rebates.service import settle_due
from jobs.payments import submit_refund
from tests.races.conftest import ROUNDS, Answer, Buyer, Race

pytestmark = pytest.mark.race

GRANT_FEN = 1000
FIXED = {
    "rules": [
        {
            "id": "fixed",
            "kind": "fixed",
            "priority": 1,
            "stacking": "combinable",
            "amount_fen": GRANT_FEN,
            "min_order_fen": 0,
        }
    ]
}


def _grants(race: Race, order_ids: list[int]) -> list[RebateGrant]:
    with race.context():
        grants = list(
            db.session.scalars(
                select(RebateGrant).where(RebateGrant.order_id.in_(order_ids)).order_by(RebateGrant.id)
            )
        )
        db.session.expunge_all()
        return grants


def _moved_to_budget(race: Race, campaign_id: int, key_prefix: str) -> int:
    """Fen that entries keyed ``key_prefix…`` moved into the campaign's budget."""
    with race.context():
        moved = db.session.scalar(
            select(func.coalesce(func.sum(Posting.amount), 0))
            .join(JournalEntry, JournalEntry.id == Posting.entry_id)
            .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
            .where(
                JournalEntry.idempotency_key.startswith(key_prefix),
                LedgerAccount.kind == AccountKind.CAMPAIGN_BUDGET,
                LedgerAccount.owner_id == campaign_id,
            )
        )
        return moved.fen if isinstance(moved, Money) else int(moved or 0)


def _entries(race: Race, key_prefix: str, reason: EntryReason) -> int:
    with race.context():
        return int(
            db.session.scalar(
                select(func.count(JournalEntry.id)).where(
                    JournalEntry.idempotency_key.startswith(key_prefix), JournalEntry.reason == reason
                )
            )
            or 0
        )


def _window_days(race: Race) -> int:
    """The merchant's after-sales window in days."""
    with race.context():
        merchant = db.session.get(Merchant, race.merchant_id)
        assert merchant is not None
        return merchant.after_sales_window_days


def test_a_refund_racing_the_settlement_of_its_rebate_reverses_it_exactly_once(race: Race) -> None:
    """A ¥100 order earns the buyer ¥10 pending; half is refunded while the settlement sweep runs — both
    when the shop asks for the refund and when WeChat says it succeeded. ¥5 stays the buyer's, once."""
    campaign_id = race.campaign(FIXED, budget_fen=(ROUNDS + 5) * GRANT_FEN)
    window = timedelta(days=_window_days(race) + 1)

    def settle() -> Answer:
        return race.call(settle_due, now=utcnow() + window)

    def one_round(round_no: int) -> None:
        buyer = race.buyer()
        order_id, out_order_no = race.register(buyer, 10_000)
        assert race.pay(buyer, order_id).ok
        (out_trade_no,) = race.out_trade_nos(order_id)
        assert race.user_pays(out_trade_no).ok
        received = race.post(
            f"/api/shop/v1/orders/{out_order_no}/events",
            json={"type": "received", "occurred_at": utcnow().isoformat()},
            headers=race.shop_headers,
        )
        assert received.ok, str(received)
        budget = race.balance(AccountKind.CAMPAIGN_BUDGET, campaign_id)
        refund_no = f"RF-RACE-{race.next()}"

        def ask_refund() -> Answer:
            return race.post(
                f"/api/shop/v1/orders/{out_order_no}/refunds",
                json={"out_refund_no": refund_no, "amount_fen": 5000},
                headers=race.shop_headers,
            )

        asked, first_sweep = race.staggered(round_no, ask_refund, settle)
        race.assert_clean([asked, first_sweep])
        if asked.busy:
            asked = ask_refund()  # the shop retries after Retry-After
        assert asked.status == 202, str(asked)
        with race.context():
            refund_id, wechat_no = db.session.execute(
                select(Refund.id, Refund.wechat_refund_no).where(Refund.out_refund_no == refund_no)
            ).one()
        submitted = race.call(submit_refund, refund_id)
        assert submitted.ok, str(submitted)

        def wechat_refunds() -> Answer:
            return Answer.of(
                race.sandbox.admin.post(
                    f"/_sandbox/refunds/{wechat_no}/resolve", json={"mchid": race.mchid, "status": "SUCCESS"}
                )
            )

        resolved, second_sweep = race.staggered(round_no, wechat_refunds, settle)
        race.assert_clean([second_sweep])
        last_sweep = settle()
        race.assert_clean([last_sweep])
        (grant,) = _grants(race, [order_id])
        with race.context():
            refund_status = db.session.get(Refund, refund_id).status.value  # type: ignore[union-attr]

        assert {
            "WeChat resolved": resolved.status,
            "refund": refund_status,
            "grant (amount, reversed, status)": (grant.amount.fen, grant.reversed.fen, grant.status.value),
            "clawed back into the budget": _moved_to_budget(race, campaign_id, f"clawback:{grant.id}:"),
            "settlements": _entries(race, f"settle:{grant.id}", EntryReason.SETTLE),
            "wallet": race.wallet(buyer.consumer_id),
            "budget (delta)": race.balance(AccountKind.CAMPAIGN_BUDGET, campaign_id) - budget,
        } == {
            "WeChat resolved": 200,
            "refund": "succeeded",
            "grant (amount, reversed, status)": (GRANT_FEN, GRANT_FEN // 2, "available"),
            "clawed back into the budget": GRANT_FEN // 2,
            "settlements": 1,
            "wallet": {"available": GRANT_FEN // 2, "pending": 0, "withdrawing": 0, "debt": 0},
            "budget (delta)": GRANT_FEN // 2,
        }

    race.rounds(one_round)


BUDGET_FEN, ORDERS, ORDER_FEN = 2500, 10, 5000
FITS = BUDGET_FEN // GRANT_FEN  # grants the budget can pay each round


def _awaiting_payment(race: Race, buyer: Buyer, count: int) -> list[tuple[int, str]]:
    """``count`` orders with a live pay sheet each, as prepay leaves them: [(order id, out_trade_no)]."""
    created = []
    with race.context():
        now = utcnow()
        for _ in range(count):
            order = Order(
                merchant_id=race.merchant_id,
                consumer_id=buyer.consumer_id,
                out_order_no=f"SO-BUDGET-{race.next()}",
                request_digest="0" * 64,
                total=Money(ORDER_FEN),
                items=[],
                description="tea",
                open_after_sale_ids=[],
                status=OrderStatus.PENDING_PAYMENT,
            )
            db.session.add(order)
            db.session.flush()
            attempt = PaymentAttempt(
                merchant_id=race.merchant_id,
                order_id=order.id,
                out_trade_no=f"HL{order.id:08d}P1",
                appid=race.mp_appid,
                payer_openid=buyer.openid,
                amount=Money(ORDER_FEN),
                status=AttemptStatus.ACTIVE,
                expires_at=now + timedelta(minutes=30),
            )
            db.session.add(attempt)
            created.append((order, attempt))
        db.session.commit()
        return [(order.id, attempt.out_trade_no) for order, attempt in created]


def test_orders_racing_for_a_nearly_empty_budget_never_overspend_it(race: Race) -> None:
    """Each round the budget is topped up to ¥25 and ten ¥50 orders are paid at once; a ¥10 grant each
    fits twice. WeChat's notifications arrive together, each on its own connection."""
    campaign_id = race.campaign(FIXED, budget_fen=BUDGET_FEN)
    funded = [BUDGET_FEN]

    def one_round(i: int) -> None:
        left = race.balance(AccountKind.CAMPAIGN_BUDGET, campaign_id)
        if i and left < BUDGET_FEN:
            race.fund(campaign_id, BUDGET_FEN - left)
            funded.append(BUDGET_FEN - left)
        buyer = race.buyer()
        orders = _awaiting_payment(race, buyer, ORDERS)
        notifications = [race.forger.signed(race.forger.transaction(no, ORDER_FEN)) for _, no in orders]

        answers = race.race([partial(race.notify, n) for n in notifications])
        race.assert_clean(answers)
        # WeChat redelivers what was not acknowledged (SQLite's busy answers): freshly signed, one by one.
        redelivered = [
            race.notify(race.forger.signed(race.forger.transaction(no, ORDER_FEN)))
            for (_, no), answer in zip(orders, answers, strict=True)
            if not answer.ok
        ]
        order_ids = [o for o, _ in orders]
        granted = [g.amount.fen for g in _grants(race, order_ids)]
        with race.context():
            ever_granted = db.session.scalar(
                select(func.coalesce(func.sum(RebateGrant.amount), 0)).where(
                    RebateGrant.campaign_id == campaign_id
                )
            )
            paid = db.session.scalar(
                select(func.count(Order.id)).where(Order.id.in_(order_ids), Order.status == OrderStatus.PAID)
            )
        ever_fen = ever_granted.fen if isinstance(ever_granted, Money) else int(ever_granted or 0)

        assert {
            "redelivered answers": [a.status for a in redelivered if not a.ok],
            "orders paid": paid,
            "granted this round": granted,
            "budget left": race.balance(AccountKind.CAMPAIGN_BUDGET, campaign_id),
            "reserved": race.balance(AccountKind.CAMPAIGN_RESERVED, campaign_id),
            "granted ≤ funded": ever_fen <= sum(funded),
            "budget = funded - granted": race.balance(AccountKind.CAMPAIGN_BUDGET, campaign_id)
            == sum(funded) - ever_fen,
        } == {
            "redelivered answers": [],
            "orders paid": ORDERS,
            "granted this round": [GRANT_FEN] * FITS,
            "budget left": BUDGET_FEN - FITS * GRANT_FEN,
            "reserved": 0,
            "granted ≤ funded": True,
            "budget = funded - granted": True,
        }

    race.rounds(one_round)
