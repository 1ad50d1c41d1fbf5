"""Held rewards through HTTP: a self-referral ring and an order without a browse/cart trail are held;
review approves (settles), rejects (reversed exactly) or bans; audited; refused to roles without it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEntry
from app.auth.principals import Role
from app.consumers.models import Consumer, ConsumerStatus
from app.core.db import utcnow
from app.ledger.accounts import campaign_accounts, consumer_accounts
from app.rebates.models import GrantStatus, RebateGrant
from app.rebates.service import settle_due
from app.risk.models import HoldStatus, RiskHold
from tests.console_client import Console
from tests.factories import make_staff
from tests.invitations.helpers import bind, invite_code
from tests.payments.conftest import Shop
from tests.risk.conftest import Person, device_token, ledger_clean, person


def _received(who: Person, order_id: int) -> None:
    out_order_no = _out_order_no(who, order_id)
    answer = who.shop.client.post(
        f"/api/shop/v1/orders/{out_order_no}/events",
        headers=who.shop.shop_headers,
        json={"type": "received", "occurred_at": utcnow().isoformat()},
    )
    assert answer.status_code == 200, answer.json


def _out_order_no(who: Person, order_id: int) -> str:
    from app.extensions import db
    from app.orders.models import Order

    order = db.session.get(Order, order_id)
    assert order is not None
    return order.out_order_no


def _grants(db_session: Session, order_id: int) -> list[tuple[str, int, GrantStatus]]:
    rows = db_session.scalars(
        select(RebateGrant).where(RebateGrant.order_id == order_id).execution_options(populate_existing=True)
    )
    return sorted((g.beneficiary, g.amount.fen - g.reversed.fen, g.status) for g in rows)


def _hold(db_session: Session, order_id: int) -> RiskHold | None:
    return db_session.scalar(
        select(RiskHold).where(RiskHold.order_id == order_id).execution_options(populate_existing=True)
    )


def _ring(shop: Shop) -> tuple[Person, Person]:
    """Alice invites bob; both on alice's phone (one device token)."""
    phone = device_token(shop.client)
    alice = Person(shop, "198.51.100.10", phone)
    bob = person(shop, "bob", ip="198.51.100.11", device=phone)
    alice.browse()
    alice.order("ALICE-1", 3000)  # alice seen with her phone
    assert bind(bob.shop, invite_code(alice.shop)).status_code == 201
    bob.browse()
    return alice, bob


def test_a_self_referral_ring_is_held_and_approved_rewards_settle(
    shop: Shop, campaign: int, reviewer: Console, db_session: Session
) -> None:
    alice, bob = _ring(shop)
    order = bob.order("BOB-1", 10000)
    hold = _hold(db_session, order)
    assert hold is not None and hold.status is HoldStatus.HELD
    assert hold.reasons == ["self_referral"]
    assert _grants(db_session, order) == [
        ("buyer", 1000, GrantStatus.PENDING),
        ("invitee", 500, GrantStatus.PENDING),
        ("inviter", 1000, GrantStatus.PENDING),
    ]
    queue = reviewer.get("/api/console/v1/risk/holds")
    assert queue.status_code == 200, queue.json
    assert [(h["order_id"], h["reasons"], h["held_fen"]) for h in queue.json] == [
        (order, ["self_referral"], 2500)
    ]

    # Received, window passed: the held order's grants stay pending; alice's own order settles.
    _received(bob, order)
    _received(alice, _alice_order(db_session, alice))
    assert settle_due(now=utcnow() + timedelta(days=30)) == 1
    assert _grants(db_session, order)[0][2] is GrantStatus.PENDING

    approved = reviewer.post(
        f"/api/console/v1/risk/holds/{hold.id}/approve", json={"note": "friends, checked"}
    )
    assert approved.status_code == 200, approved.json
    assert approved.json["status"] == "approved"
    assert settle_due(now=utcnow() + timedelta(days=30)) == 3
    wallet = consumer_accounts(shop.merchant.id, bob.consumer_id)
    assert (wallet.pending.balance.fen, wallet.available.balance.fen) == (0, 1500)
    again = reviewer.post(f"/api/console/v1/risk/holds/{hold.id}/reject", json={"reason": "too late"})
    assert again.status_code == 409
    ledger_clean()
    audit = db_session.scalars(select(AuditEntry).where(AuditEntry.target_type == "risk_hold")).all()
    assert [(a.action, a.after["status"]) for a in audit] == [("risk_hold.approve", "approved")]


def _alice_order(db_session: Session, alice: Person) -> int:
    from app.orders.models import Order

    return int(db_session.scalar(select(Order.id).where(Order.out_order_no == "ALICE-1")) or 0)


def test_an_order_without_a_trail_is_held_and_rejecting_reverses_it_exactly(
    shop: Shop, campaign: int, reviewer: Console, db_session: Session
) -> None:
    carol = person(shop, "carol", ip="198.51.100.30", device=device_token(shop.client))
    budget = campaign_accounts(shop.merchant.id, campaign).budget
    before = budget.balance.fen
    order = carol.order("CAROL-1", 20000)  # no view, no cart: straight to a paid order
    hold = _hold(db_session, order)
    assert hold is not None and hold.reasons == ["no_trail"]
    wallet = consumer_accounts(shop.merchant.id, carol.consumer_id)
    assert wallet.pending.balance.fen == 2000
    db_session.refresh(budget)
    assert budget.balance.fen == before - 2000

    rejected = reviewer.post(f"/api/console/v1/risk/holds/{hold.id}/reject", json={"reason": "fake order"})
    assert rejected.status_code == 200, rejected.json
    assert (rejected.json["status"], rejected.json["reversed_fen"], rejected.json["held_fen"]) == (
        "rejected",
        2000,
        0,
    )
    db_session.refresh(budget)
    assert budget.balance.fen == before
    wallet = consumer_accounts(shop.merchant.id, carol.consumer_id)
    assert (wallet.pending.balance.fen, wallet.available.balance.fen) == (0, 0)
    # Settling later moves nothing: the grant is wholly reversed.
    _received(carol, order)
    settle_due(now=utcnow() + timedelta(days=30))
    assert consumer_accounts(shop.merchant.id, carol.consumer_id).available.balance.fen == 0
    ledger_clean()
    entry = db_session.scalar(select(AuditEntry).where(AuditEntry.action == "risk_hold.reject"))
    assert entry is not None and entry.after["reason"] == "fake order" and entry.after["reversed_fen"] == 2000


def test_an_order_with_a_trail_from_its_own_device_is_not_held(
    shop: Shop, campaign: int, db_session: Session
) -> None:
    dora = person(shop, "dora", ip="198.51.100.40", device=device_token(shop.client))
    dora.browse()
    order = dora.order("DORA-1", 20000)
    assert _hold(db_session, order) is None
    assert _grants(db_session, order) == [("buyer", 2000, GrantStatus.PENDING)]


def test_ban_rejects_and_bans_the_linked_group(
    shop: Shop, campaign: int, reviewer: Console, db_session: Session
) -> None:
    alice, bob = _ring(shop)
    order = bob.order("BOB-1", 10000)
    hold = _hold(db_session, order)
    assert hold is not None
    group = reviewer.get(f"/api/console/v1/risk/consumers/{bob.consumer_id}/group")
    assert group.status_code == 200
    assert sorted(group.json["members"]) == sorted([alice.consumer_id, bob.consumer_id])
    devices = {
        (link["consumer_id"], link["digest"]) for link in group.json["links"] if link["kind"] == "device"
    }
    assert {consumer for consumer, _ in devices} == {alice.consumer_id, bob.consumer_id}
    assert len({digest for _, digest in devices}) == 1  # one phone
    banned = reviewer.post(
        f"/api/console/v1/risk/holds/{hold.id}/ban", json={"reason": "ring of accounts", "group": True}
    )
    assert banned.status_code == 200, banned.json
    assert sorted(banned.json["banned_consumer_ids"]) == sorted([alice.consumer_id, bob.consumer_id])
    assert banned.json["reversed_fen"] == 2500
    for consumer_id in (alice.consumer_id, bob.consumer_id):
        consumer = db_session.get(Consumer, consumer_id)
        assert consumer is not None
        db_session.refresh(consumer)
        assert consumer.status is ConsumerStatus.BANNED
    # A banned consumer's session is gone: no more claims.
    assert bob.post("/api/mp/v1/events", json={"events": []}).status_code == 401
    ledger_clean()
    actions = db_session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions.count("consumer.ban") == 2 and "risk_hold.reject" in actions


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR, Role.FINANCE])
def test_roles_without_review_rights_are_refused_and_nothing_moves(
    shop: Shop, campaign: int, client: FlaskClient, db_session: Session, role: Role
) -> None:
    carol = person(shop, "carol", ip="198.51.100.30", device=None)
    order = carol.order("CAROL-1", 20000)
    hold = _hold(db_session, order)
    assert hold is not None
    staff = make_staff(f"{role.value}@acme.test", merchant=shop.merchant, role=role)
    console = Console(client, shop.merchant.slug).login(staff.email)
    for action, body in (("approve", {}), ("reject", {"reason": "x"}), ("ban", {"reason": "x"})):
        answer = console.post(f"/api/console/v1/risk/holds/{hold.id}/{action}", json=body)
        assert answer.status_code == 403, answer.json
    assert console.get("/api/console/v1/risk/holds").status_code == 403
    hold = _hold(db_session, order)
    assert hold is not None and hold.status is HoldStatus.HELD
    assert consumer_accounts(shop.merchant.id, carol.consumer_id).pending.balance.fen == 2000


def test_bulk_approve_reports_those_already_resolved(
    shop: Shop, campaign: int, reviewer: Console, db_session: Session
) -> None:
    ids = []
    for i in range(3):
        who = person(shop, f"p{i}", ip=f"198.51.100.{50 + i}", device=None)
        order = who.order(f"BULK-{i}", 20000)
        hold = _hold(db_session, order)
        assert hold is not None
        ids.append(hold.id)
    first = reviewer.post(f"/api/console/v1/risk/holds/{ids[0]}/reject", json={"reason": "fake"})
    assert first.status_code == 200
    bulk = reviewer.post("/api/console/v1/risk/holds/bulk", json={"hold_ids": ids, "action": "approve"})
    assert bulk.status_code == 200, bulk.json
    assert bulk.json == {"done": ids[1:], "refused": {str(ids[0]): "conflict"}}
    ledger_clean()


def test_a_withdrawal_of_a_consumer_under_review_waits_for_a_person(
    shop: Shop, campaign: int, reviewer: Console, db_session: Session
) -> None:
    erin = person(shop, "erin", ip="198.51.100.60", device=device_token(shop.client))
    erin.browse(minutes_ago=(6, 5))
    settled = erin.order("ERIN-1", 20000)
    _received(erin, settled)
    assert settle_due(now=utcnow() + timedelta(days=30)) == 1
    assert consumer_accounts(shop.merchant.id, erin.consumer_id).available.balance.fen == 2000

    # Her next order has no trail in the window (her events are 5 minutes old; the window now 1 minute).
    owner = make_staff("owner@acme.test", merchant=shop.merchant, role=Role.OWNER)
    console = Console(shop.client, shop.merchant.slug).login(owner.email)
    assert (
        console.patch("/api/console/v1/risk/policy", json={"policy": {"trail_window_minutes": 1}}).status_code
        == 200
    )
    held = erin.order("ERIN-2", 20000)
    assert _hold(db_session, held) is not None

    asked = erin.post("/api/mp/v1/withdrawals", json={"amount_fen": 1000, "idempotency_key": "w-1"})
    assert asked.status_code == 201, asked.json
    assert asked.json["status"] == "pending_review"  # under the ¥50 auto-approval, held for a person
    from app.withdrawals.models import Withdrawal

    withdrawal = db_session.get(Withdrawal, asked.json["id"])
    assert withdrawal is not None
    assert withdrawal.history[-1]["event"] == "held by risk control"
    assert withdrawal.history[-1]["reasons"] == ["reward_under_review"]
    ledger_clean()
