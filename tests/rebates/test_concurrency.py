"""Races on real commits (the ``committed`` app of tests/payments): one red packet wanted by two orders,
and a campaign budget wanted by more orders than it can pay. Each thread has its own app context,
session and database connection; the ledger check runs on what was committed."""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

import pytest
import responses
from requests import PreparedRequest
from sqlalchemy import event, func, select

from app.audit.service import CLI
from app.campaigns.models import Campaign, CampaignStatus
from app.campaigns.service import create_campaign, deposit_budget, fund_campaign, transition
from app.consumers.models import AppKind, WeChatIdentity
from app.core.db import utcnow
from app.core.errors import DomainError
from app.core.money import Money
from app.extensions import db
from app.ledger.accounts import campaign_accounts
from app.ledger.checks import run_checks
from app.merchants.models import Merchant
from app.orders.service import register_order
from app.payments.models import PaymentAttempt
from app.payments.service import prepare_payment
from app.rebates.models import RebateGrant
from app.red_packets.models import RedPacket, RedPacketStatus
from app.red_packets.service import issue_red_packet
from tests.payments.conftest import Committed
from tests.rebates.builders import two_way

T = TypeVar("T")


def _race(n: int, call: Callable[[int], T]) -> list[T]:
    """Run ``call(i)`` for i in range(n) on n threads released together."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T:
        barrier.wait(timeout=30)
        return call(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def _clean(committed: Committed) -> None:
    with committed.app.app_context():
        assert [(r.name, r.violations) for r in run_checks() if r.violations] == []


def _campaign(committed: Committed, rules: dict[str, Any], budget_fen: int) -> int:
    """An active campaign funded with ``budget_fen`` from the merchant's deposited budget (committed)."""
    merchant_id = committed.merchant_id
    with committed.app.app_context():
        deposit_budget(key="bank-1", amount=Money(budget_fen), merchant_id=merchant_id)
        now = utcnow()
        campaign = create_campaign(
            merchant_id=merchant_id,
            name="race",
            starts_at=now - timedelta(minutes=1),
            ends_at=now + timedelta(days=30),
            rules=rules,
            actor=CLI,
        )
        transition(merchant_id=merchant_id, campaign_id=campaign.id, to=CampaignStatus.ACTIVE, actor=CLI)
        fund_campaign(
            merchant_id=merchant_id,
            campaign_id=campaign.id,
            amount=Money(budget_fen),
            source="merchant",
            key="fund-1",
            actor=CLI,
        )
        db.session.commit()
        return campaign.id


def _register(committed: Committed, out_order_no: str, total_fen: int) -> int:
    with committed.app.app_context():
        merchant = db.session.get(Merchant, committed.merchant_id)
        assert merchant is not None
        order, _ = register_order(
            merchant=merchant,
            document={
                "out_order_no": out_order_no,
                "consumer": {"id": committed.consumer_id},
                "total_fen": Money(total_fen),
                "items": [
                    {
                        "sku": "TEA-1",
                        "name": "Oolong",
                        "category": "tea",
                        "quantity": 1,
                        "unit_price_fen": Money(total_fen),
                    }
                ],
            },
        )
        db.session.commit()
        return order.id


def test_two_orders_racing_for_one_red_packet_one_reserves_it(committed: Committed) -> None:
    merchant_id, consumer_id = committed.merchant_id, committed.consumer_id
    campaign_id = _campaign(committed, {"rules": [two_way()]}, budget_fen=100_000)
    with committed.app.app_context():
        # The consumer signed in to the merchant's mini-program (prepay needs their openid).
        db.session.add(
            WeChatIdentity(
                merchant_id=merchant_id,
                consumer_id=consumer_id,
                app_kind=AppKind.MINIPROGRAM,
                appid=committed.forger.appid,
                openid="o-racer",
            )
        )
        campaign = db.session.get(Campaign, campaign_id)
        assert campaign is not None
        now = utcnow()
        packet = issue_red_packet(
            merchant_id=merchant_id,
            campaign_id=campaign_id,
            rule_version_id=campaign.current_version_id or 0,
            rule_id="two-way",
            consumer_id=consumer_id,
            face_value=Money(1000),
            min_spend=Money(5000),
            valid_from=now - timedelta(minutes=1),
            valid_until=now + timedelta(days=30),
            issuer_rate_bp=1000,
            buyer_rate_bp=500,
            max_order=Money(100_000),
            worst_case_cost=Money(16_000),
            idempotency_key="issue:race",
        )
        assert packet is not None
        db.session.commit()
        packet_id = packet.id
    orders = [_register(committed, f"SO-RP{i}", 6000) for i in range(2)]

    pay_base = committed.app.extensions["hongli.settings"].wechat.pay_base_url.rstrip("/")

    def prepay(request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        body = json.dumps({"prepay_id": f"wx{secrets.token_hex(8)}"}).encode()
        return 200, committed.forger.headers(body), body.decode()

    def pay_with_packet(i: int) -> int:
        with committed.app.app_context():
            merchant = db.session.get(Merchant, merchant_id)
            assert merchant is not None
            try:
                prepare_payment(
                    merchant=merchant,
                    consumer_id=consumer_id,
                    order_id=orders[i],
                    appid=committed.forger.appid,
                    red_packet_id=packet_id,
                )
                db.session.commit()
                return 200
            except DomainError as exc:
                db.session.rollback()
                return exc.status

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback("POST", f"{pay_base}/v3/pay/transactions/jsapi", callback=prepay)
        statuses = _race(2, pay_with_packet)

    assert sorted(statuses) == [200, 409]
    winner = orders[statuses.index(200)]
    with committed.app.app_context():
        packet = db.session.get(RedPacket, packet_id)
        assert packet is not None
        assert (packet.status, packet.order_id, packet.reserved.fen) == (
            RedPacketStatus.RESERVED,
            winner,
            16_000,
        )
        attempts = db.session.execute(
            select(PaymentAttempt.order_id, PaymentAttempt.red_packet_id, PaymentAttempt.amount)
        ).all()
        assert attempts == [(winner, packet_id, Money(5000))]
    _clean(committed)

    # The winner pays: the packet is redeemed once, its legs booked from its own reservation.
    out_trade_no = f"HL{winner:08d}P1"
    headers, body = committed.forger.signed(committed.forger.transaction(out_trade_no, 5000))
    answer = committed.client().post(f"/wechat/{committed.slug}/pay/notify", data=body, headers=headers)
    assert answer.status_code == 204
    with committed.app.app_context():
        packet = db.session.get(RedPacket, packet_id)
        assert packet is not None and (packet.status, packet.reserved.fen) == (RedPacketStatus.REDEEMED, 0)
        legs = db.session.execute(
            select(RebateGrant.beneficiary, RebateGrant.amount).where(RebateGrant.red_packet_id == packet_id)
        ).all()
        assert sorted((b, m.fen) for b, m in legs) == [
            ("buyer", 300),
            ("issuer_merchant", 600),
            ("red_packet_discount", 1000),
        ]
    _clean(committed)


K, N, GRANT_FEN = 10, 50, 1000


FIXED_RULES = {
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


def _orders_race_for_budget(committed: Committed) -> int:
    """N orders of a campaign whose budget pays K fixed grants are confirmed at the same moment."""
    campaign_id = _campaign(committed, FIXED_RULES, budget_fen=K * GRANT_FEN)
    notifications = []
    for i in range(N):
        _, out_trade_no = committed.order(f"SO-B{i}", 5000, paid=False)
        notifications.append(committed.forger.signed(committed.forger.transaction(out_trade_no, 5000)))
    url = f"/wechat/{committed.slug}/pay/notify"

    def deliver(i: int) -> int:
        headers, body = notifications[i]
        return committed.client().post(url, data=body, headers=headers).status_code

    assert _race(N, deliver) == [204] * N
    return campaign_id


def test_a_budget_for_k_grants_pays_at_most_k_of_n_parallel_orders(committed: Committed) -> None:
    campaign_id = _orders_race_for_budget(committed)

    with committed.app.app_context():
        grants = db.session.scalars(select(RebateGrant).where(RebateGrant.campaign_id == campaign_id)).all()
        assert len(grants) == K and sum(g.amount.fen for g in grants) == K * GRANT_FEN
        assert len({g.order_id for g in grants}) == K
        assert campaign_accounts(committed.merchant_id, campaign_id).budget.balance.fen == 0
        assert db.session.scalar(select(func.count(RebateGrant.id))) == K
    _clean(committed)


def test_parallel_orders_the_budget_cannot_pay_are_all_counted_as_skipped(committed: Committed) -> None:
    campaign_id = _orders_race_for_budget(committed)

    with committed.app.app_context():
        campaign = db.session.get(Campaign, campaign_id)
        assert campaign is not None
        assert campaign.skip_stats.get("budget exhausted") == N - K, campaign.skip_stats


def test_a_budget_spent_between_the_read_and_the_booking_is_booked_again_under_lock(
    committed: Committed, caplog: pytest.LogCaptureFixture
) -> None:
    """Paid orders read the budget without a lock and take it last. Here a second order commits its
    grant exactly between the first order's read and its booking: the first order's take is refused,
    its booking rolled back to the savepoint and evaluated again under the budget's lock."""
    campaign_id = _campaign(committed, FIXED_RULES, budget_fen=GRANT_FEN + GRANT_FEN // 2)
    notifications = []
    for i in range(2):
        _, out_trade_no = committed.order(f"SO-L{i}", 5000, paid=False)
        notifications.append(committed.forger.signed(committed.forger.transaction(out_trade_no, 5000)))
    url = f"/wechat/{committed.slug}/pay/notify"
    answers: list[int] = []

    def deliver(i: int) -> None:
        headers, body = notifications[i]
        answers.append(committed.client().post(url, data=body, headers=headers).status_code)

    with committed.app.app_context():
        engine = db.engine
    cut_in = threading.Event()

    def second_order_cuts_in(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # The first order's booking starts (its savepoint) after it read the budget: the second order is
        # delivered and committed on its own connection before the first goes on.
        if statement.startswith("SAVEPOINT") and not cut_in.is_set():
            cut_in.set()
            second = threading.Thread(target=deliver, args=(1,))
            second.start()
            second.join(timeout=30)

    event.listen(engine, "before_cursor_execute", second_order_cuts_in)
    try:
        with caplog.at_level(logging.INFO, logger="hongli.rebates"):
            deliver(0)
    finally:
        event.remove(engine, "before_cursor_execute", second_order_cuts_in)

    assert answers == [204, 204]
    assert any("booking again" in r.getMessage() for r in caplog.records)
    with committed.app.app_context():
        grants = db.session.scalars(select(RebateGrant).where(RebateGrant.campaign_id == campaign_id)).all()
        assert [g.amount.fen for g in grants] == [GRANT_FEN]
        assert campaign_accounts(committed.merchant_id, campaign_id).budget.balance.fen == GRANT_FEN // 2
        campaign = db.session.get(Campaign, campaign_id)
        assert campaign is not None and campaign.skip_stats == {"budget exhausted": 1}
    _clean(committed)
