"""Regressions found reviewing the batched booking (paid orders booked without the campaign lock): a spent
packet's buyer leg counts in its campaign's caps within the same booking; a booking refused by a concurrent
take is evaluated again without locking a budget ahead of lower account ids (no deadlock)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.rebates.models import RebateGrant
from tests.campaign_setup import start_campaign
from tests.payments.conftest import Shop
from tests.rebates.builders import two_way

TWO_WAY = two_way(priority=10)
CASH_BACK = {
    "id": "cash-back",
    "kind": "cashback",
    "priority": 5,
    "stacking": "combinable",
    "rate_bp": 800,
    "requires_red_packet": True,
}


def test_a_spent_packets_buyer_leg_counts_against_the_same_campaigns_daily_cap(
    shop: Shop, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    """One campaign: two-way + cash-back on packet orders, a ¥5 daily cap per buyer.

    Order 2 (¥60, ¥10 packet, ¥50 paid): the packet's buyer leg is 5% of ¥60 = 300 fen (counted, not
    capped); cash-back is 8% of ¥50 = 400 fen, which the cap must reduce to 500 - 300 = 200 fen. The leg
    is written with the rest at the end of the booking, so the caps must count it from the booking
    itself (else the day counter refuses 300 + 400 > 500 on every delivery: an order never booked).
    """
    rules: dict[str, Any] = {"rules": [TWO_WAY, CASH_BACK], "caps": {"per_user_day_fen": 500}}
    campaign = start_campaign(shop, app, client, rules)
    first = shop.register("RV-1", 20000)
    shop.pay(first["id"])  # earns the packet (no buyer rebate)
    packet = shop.client.get("/api/mp/v1/red-packets", headers=shop.consumer_headers).json[0]
    second = shop.register("RV-2", 6000)
    assert shop.pay_params(second["id"], red_packet_id=packet["id"]).json["payable_fen"] == 5000

    paid = shop.sandbox.post(
        f"/transactions/{shop.out_trade_no(second['id'])}/pay", {"mchid": shop.merchant.mchid}
    )

    buyer_grants = sorted(
        (grant.rule_id, grant.amount.fen)
        for grant in db_session.scalars(
            select(RebateGrant).where(
                RebateGrant.campaign_id == campaign,
                RebateGrant.beneficiary == "buyer",
                RebateGrant.order_id == second["id"],
            )
        )
    )
    attempts = [
        attempt
        for note in shop.sandbox.get("/notifications")["notifications"]
        if note["resource"].get("out_trade_no") == shop.out_trade_no(second["id"])
        for attempt in note["attempts"]
    ]
    assert buyer_grants == [("cash-back", 200), ("two-way", 300)], (paid["trade_state"], attempts)


# ---------------------------------------------------------------- a refused take, evaluated again


def test_a_booking_read_again_after_a_refused_take_queues_behind_other_writers_without_deadlock(
    committed: Any,
) -> None:
    """Order L0 reads the budget; order L1 commits its grant (L0's take is refused); L0 rolls back to its
    savepoint and, as it starts again, another writer keeping the ascending account order (a clawback,
    a settlement: the buyer's pending bucket, then the budget) moves money. The retry takes no lock ahead
    of its batch, so nobody waits in a cycle: both orders and the writer finish, the ledger is clean."""
    import threading

    from sqlalchemy import event

    from app.core.money import Money
    from app.extensions import db
    from app.ledger.accounts import campaign_accounts, consumer_accounts
    from app.ledger.models import EntryReason
    from app.ledger.service import post_entry
    from tests.rebates.test_concurrency import _campaign, _clean

    def fixed(rule_id: str, fen: int, priority: int) -> dict[str, Any]:
        return {
            "id": rule_id,
            "kind": "fixed",
            "priority": priority,
            "stacking": "combinable",
            "amount_fen": fen,
            "min_order_fen": 0,
        }

    # 1000 + 200 per order from a budget of 1500: L1 leaves 300, so L0's retry books the 200 only.
    rules = {"rules": [fixed("big", 1000, 2), fixed("small", 200, 1)]}
    with committed.app.app_context():
        pending_id = consumer_accounts(committed.merchant_id, committed.consumer_id).pending.id
        db.session.commit()
    campaign_id = _campaign(committed, rules, budget_fen=1500)
    with committed.app.app_context():
        budget_id = campaign_accounts(committed.merchant_id, campaign_id).budget.id
        engine = db.engine
    assert pending_id < budget_id

    notifications = []
    for i in range(2):
        _, out_trade_no = committed.order(f"SO-DL{i}", 5000, paid=False)
        notifications.append(committed.forger.signed(committed.forger.transaction(out_trade_no, 5000)))
    url = f"/wechat/{committed.slug}/pay/notify"
    answers: dict[int, int] = {}
    errors: list[BaseException] = []

    def deliver(i: int) -> None:
        headers, body = notifications[i]
        answers[i] = committed.client().post(url, data=body, headers=headers).status_code

    def other_writer() -> None:
        try:
            with committed.app.app_context():
                pending = consumer_accounts(committed.merchant_id, committed.consumer_id).pending
                budget = campaign_accounts(committed.merchant_id, campaign_id).budget
                # A correction there and back: both accounts locked in ascending order, no money kept.
                for n, fen in ((1, 1), (2, -1)):
                    post_entry(
                        key=f"regression:other-writer:{n}",
                        reason=EntryReason.CORRECTION,
                        cause_type="regression",
                        cause_id=str(n),
                        lines=[(budget, -Money(fen)), (pending, Money(fen))],
                        merchant_id=committed.merchant_id,
                    )
                db.session.commit()
        except BaseException as exc:
            errors.append(exc)

    main = threading.get_ident()
    savepoints = 0

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        nonlocal savepoints
        if threading.get_ident() != main or not statement.startswith("SAVEPOINT"):
            return
        savepoints += 1
        # The first booking starts: L1 commits meanwhile. The retry starts: the other writer runs.
        cut_in = threading.Thread(target=deliver, args=(1,)) if savepoints == 1 else None
        cut_in = cut_in or (threading.Thread(target=other_writer) if savepoints == 2 else None)
        if cut_in is not None:
            cut_in.start()
            cut_in.join(timeout=30)

    event.listen(engine, "before_cursor_execute", before)
    try:
        deliver(0)
    finally:
        event.remove(engine, "before_cursor_execute", before)

    assert (answers, [repr(e) for e in errors], savepoints >= 2) == ({0: 204, 1: 204}, [], True)
    with committed.app.app_context():
        booked = sorted(
            (g.rule_id, g.amount.fen)
            for g in db.session.scalars(select(RebateGrant).where(RebateGrant.campaign_id == campaign_id))
        )
        assert booked == [("big", 1000), ("small", 200), ("small", 200)]
        assert campaign_accounts(committed.merchant_id, campaign_id).budget.balance.fen == 1500 - 1400
    _clean(committed)
