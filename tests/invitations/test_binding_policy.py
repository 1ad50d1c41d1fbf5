"""The binding policy: first binding wins, no self-invite, new customers only, per merchant, expiry."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.db import utcnow
from app.core.errors import Conflict
from app.invitations.models import InviteBinding
from app.invitations.service import BINDING_DAYS, bind_invitation
from tests.invitations.helpers import as_person, bind, invite_code
from tests.payments.conftest import Shop


def _inviter_of(db_session: Session, consumer_id: int) -> int | None:
    return db_session.scalar(select(InviteBinding.inviter_id).where(InviteBinding.invitee_id == consumer_id))


def test_first_binding_wins(shop: Shop, db_session: Session) -> None:
    alice_code = invite_code(shop)
    bob, carol = as_person(shop, "bob"), as_person(shop, "carol")
    first = bind(bob, alice_code.lower())  # codes are case-insensitive
    assert first.status_code == 201, first.json
    assert first.json["code"] == alice_code
    assert first.json["expires_at"] > first.json["bound_at"]
    again = bind(bob, alice_code)
    other = bind(bob, invite_code(carol))
    assert again.status_code == other.status_code == 409
    assert other.json["error"]["details"] == {"reason": "already_bound"}
    assert _inviter_of(db_session, bob.consumer_id) == shop.consumer_id


def test_no_self_invite(shop: Shop, db_session: Session) -> None:
    response = bind(shop, invite_code(shop))
    assert response.status_code == 422
    assert response.json["error"]["details"] == {"reason": "self_invite"}
    assert _inviter_of(db_session, shop.consumer_id) is None


def test_no_loop_with_ones_own_invitee(shop: Shop, db_session: Session) -> None:
    bob = as_person(shop, "bob")
    assert bind(bob, invite_code(shop)).status_code == 201
    response = bind(shop, invite_code(bob))
    assert response.status_code == 422
    assert response.json["error"]["details"] == {"reason": "circular"}
    assert _inviter_of(db_session, shop.consumer_id) is None


def test_only_new_customers_can_be_bound(shop: Shop, db_session: Session) -> None:
    bob = as_person(shop, "bob")
    order = bob.register("BOB-1", 3000)
    bob.pay(order["id"])
    response = bind(bob, invite_code(shop))
    assert response.status_code == 409
    assert response.json["error"]["details"] == {"reason": "existing_customer"}
    assert _inviter_of(db_session, bob.consumer_id) is None


def test_an_order_registered_but_unpaid_does_not_make_an_existing_customer(shop: Shop) -> None:
    bob = as_person(shop, "bob")
    bob.register("BOB-1", 3000)
    assert bind(bob, invite_code(shop)).status_code == 201


def test_codes_are_per_merchant(shop: Shop, db_session: Session) -> None:
    other = shop.sandbox.onboard("other-tea")
    dora = as_person(replace(shop, merchant=other), "dora")
    bob = as_person(shop, "bob")
    foreign = bind(bob, invite_code(dora))
    unknown = bind(bob, "ZZZZZZZZ")
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json == unknown.json  # another merchant's codes cannot be told from no code
    assert _inviter_of(db_session, bob.consumer_id) is None
    assert bind(bob, invite_code(shop)).status_code == 201


def test_a_malformed_code_is_a_validation_error(shop: Shop) -> None:
    bob = as_person(shop, "bob")
    response = bind(bob, "no/such code")
    assert response.status_code == 422
    assert "code" in response.json["error"]["details"]["fields"]


def test_an_expired_binding_still_blocks_a_second_one(shop: Shop, db_session: Session) -> None:
    bob, carol = as_person(shop, "bob"), as_person(shop, "carol")
    long_ago = utcnow() - timedelta(days=BINDING_DAYS + 1)
    binding = bind_invitation(
        merchant_id=shop.merchant.id, consumer_id=bob.consumer_id, code=invite_code(shop), now=long_ago
    )
    assert binding.expires_at == long_ago + timedelta(days=BINDING_DAYS) < utcnow()
    assert bind(bob, invite_code(carol)).status_code == 409
    with pytest.raises(Conflict):
        bind_invitation(merchant_id=shop.merchant.id, consumer_id=bob.consumer_id, code=invite_code(carol))
    assert _inviter_of(db_session, bob.consumer_id) == shop.consumer_id
