"""Invitations and distribution end to end through the sandbox: bindings attribute paid orders to the
inviter (first paid order only) and to two promoter levels, never a third; the ledger stays clean."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.principals import Role
from app.core.db import utcnow
from app.invitations.service import BINDING_DAYS, bind_invitation
from app.rebates.models import RebateGrant
from tests.campaign_setup import start_campaign
from tests.console_client import Console
from tests.factories import make_staff
from tests.invitations.helpers import (
    as_person,
    bind,
    invite_code,
    ledger_clean,
    pending_fen,
)
from tests.payments.conftest import Shop

RULES: dict[str, Any] = {
    "rules": [
        {
            "id": "bring-a-friend",
            "kind": "invite",
            "priority": 10,
            "stacking": "combinable",
            "inviter_fen": 1000,
            "invitee_fen": 500,
        },
        {
            "id": "promoters",
            "kind": "distribution",
            "priority": 5,
            "stacking": "combinable",
            "level1_bp": 1000,
            "level2_bp": 300,
        },
    ]
}


@pytest.fixture
def campaign(shop: Shop, app: Flask, client: FlaskClient, db_session: Session) -> int:
    return start_campaign(shop, app, client, RULES)


def _grants(db_session: Session, order_id: int) -> dict[str, tuple[int | None, int]]:
    """beneficiary → (consumer, fen) of one order's grants."""
    rows = db_session.scalars(select(RebateGrant).where(RebateGrant.order_id == order_id))
    return {row.beneficiary: (row.consumer_id, row.amount.fen) for row in rows}


def _paid(person: Shop, out_order_no: str, total_fen: int, **extra: Any) -> int:
    order = person.register(out_order_no, total_fen, **extra)
    person.pay(order["id"])
    return int(order["id"])


def test_three_deep_chain_pays_the_inviter_once_and_two_levels_only(
    shop: Shop, campaign: int, db_session: Session
) -> None:
    # alice ← bob ← carol ← dave: dave's orders have three ancestors; only two levels may be paid.
    alice = shop
    bob, carol, dave = as_person(shop, "bob"), as_person(shop, "carol"), as_person(shop, "dave")
    assert bind(bob, invite_code(alice)).status_code == 201
    assert bind(carol, invite_code(bob)).status_code == 201
    assert bind(dave, invite_code(carol)).status_code == 201

    # Dave's first paid order (¥100): the invite pays carol ¥10 and dave ¥5; carol 10%, bob 3%.
    first = _paid(dave, "DAVE-1", 10000)
    assert _grants(db_session, first) == {
        "inviter": (carol.consumer_id, 1000),
        "invitee": (dave.consumer_id, 500),
        "promoter_l1": (carol.consumer_id, 1000),
        "promoter_l2": (bob.consumer_id, 300),
    }
    ledger_clean()

    # His second order: no invite reward any more; the two promoter levels again.
    second = _paid(dave, "DAVE-2", 5000)
    assert _grants(db_session, second) == {
        "promoter_l1": (carol.consumer_id, 500),
        "promoter_l2": (bob.consumer_id, 150),
    }
    assert (pending_fen(dave), pending_fen(carol), pending_fen(bob)) == (500, 2500, 450)
    # Alice is dave's third level: nothing, on any order.
    assert pending_fen(alice) == 0
    assert (
        db_session.scalars(select(RebateGrant).where(RebateGrant.consumer_id == alice.consumer_id)).all()
        == []
    )
    ledger_clean()


def test_the_shops_promoter_code_overrides_the_binding_for_that_order(
    shop: Shop, campaign: int, db_session: Session
) -> None:
    alice = shop
    bob, carol, dave = as_person(shop, "bob"), as_person(shop, "carol"), as_person(shop, "dave")
    assert bind(bob, invite_code(alice)).status_code == 201
    assert bind(dave, invite_code(carol)).status_code == 201

    # Sold by bob (the shop passes his code): bob is level 1, his inviter alice level 2; the invite
    # reward still goes to carol, who brought dave in.
    first = _paid(dave, "DAVE-1", 10000, promoter_code=invite_code(bob).lower())
    assert _grants(db_session, first) == {
        "inviter": (carol.consumer_id, 1000),
        "invitee": (dave.consumer_id, 500),
        "promoter_l1": (bob.consumer_id, 1000),
        "promoter_l2": (alice.consumer_id, 300),
    }
    # The buyer's own code, or an unknown one, is ignored: the binding attributes.
    own = _paid(dave, "DAVE-2", 10000, promoter_code=invite_code(dave))
    unknown = _paid(dave, "DAVE-3", 10000, promoter_code="NOSUCHCODE")
    for order_id in (own, unknown):
        assert _grants(db_session, order_id) == {"promoter_l1": (carol.consumer_id, 1000)}
    ledger_clean()


def test_an_expired_binding_attributes_nothing(shop: Shop, campaign: int, db_session: Session) -> None:
    alice, bob, carol = shop, as_person(shop, "bob"), as_person(shop, "carol")
    assert bind(bob, invite_code(alice)).status_code == 201
    # Carol accepted bob's invitation longer ago than a binding lasts.
    bind_invitation(
        merchant_id=shop.merchant.id,
        consumer_id=carol.consumer_id,
        code=invite_code(bob),
        now=utcnow() - timedelta(days=BINDING_DAYS, minutes=1),
    )
    first = _paid(carol, "CAROL-1", 10000)
    assert _grants(db_session, first) == {}
    assert (pending_fen(carol), pending_fen(bob), pending_fen(alice)) == (0, 0, 0)
    # Bob's own binding is live: his first order pays alice and him.
    bobs = _paid(bob, "BOB-1", 10000)
    assert _grants(db_session, bobs) == {
        "inviter": (alice.consumer_id, 1000),
        "invitee": (bob.consumer_id, 500),
        "promoter_l1": (alice.consumer_id, 1000),
    }
    ledger_clean()


def test_an_order_without_binding_or_code_pays_no_one(shop: Shop, campaign: int, db_session: Session) -> None:
    order = _paid(shop, "ALICE-1", 10000)
    assert _grants(db_session, order) == {}
    ledger_clean()


def test_a_replay_attributes_orders_as_the_live_rules_did(
    shop: Shop, app: Flask, campaign: int, db_session: Session
) -> None:
    """Replaying the current rules over real orders finds the same inviters and promoters, so it books
    what the live rules booked — codes, bindings, first orders and two levels included."""
    alice = shop
    bob, carol, dave = as_person(shop, "bob"), as_person(shop, "carol"), as_person(shop, "dave")
    assert bind(bob, invite_code(alice)).status_code == 201
    assert bind(carol, invite_code(bob)).status_code == 201
    assert bind(dave, invite_code(carol)).status_code == 201
    _paid(dave, "RPL-1", 10000)  # first order: the invite + two promoter levels
    _paid(dave, "RPL-2", 20000)  # promoters only
    _paid(dave, "RPL-3", 5000, promoter_code=invite_code(alice))  # the shop names alice
    _paid(alice, "RPL-4", 8000)  # nobody brought alice in: no grant
    live_booked = sum(
        grant.amount.fen
        for grant in db_session.scalars(select(RebateGrant).where(RebateGrant.campaign_id == campaign))
    )
    assert live_booked > 0
    operator = make_staff(merchant=shop.merchant, role=Role.OPERATOR)
    console = Console(app.test_client(), shop.merchant.slug).login(operator.email)

    # A budget as large as the live one was: what is left of it now is not the question here.
    replayed = console.post(
        f"/api/console/v1/campaigns/{campaign}/replay", json={"days": 1, "budget_fen": 10_000_000}
    )

    assert replayed.status_code == 200, replayed.json
    simulated, live = replayed.json["simulated"], replayed.json["live"]
    assert (simulated["orders"], simulated["grants"], simulated["booked_fen"]) == (
        live["orders"],
        live["grants"],
        live["booked_fen"],
    )
    assert simulated["booked_fen"] == live_booked
    # Alice's own order has nobody behind it; Dave's later orders are not first orders.
    assert simulated["skipped"] == {"no inviter": 1, "no promoter": 1, "not the first paid order": 2}
