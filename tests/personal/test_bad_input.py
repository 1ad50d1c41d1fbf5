"""Personal red packets refused: a claim by the sender, twice, by someone else, after the window, unsigned
or banned; a challenge confirmed by a third party; a shop refund of the funding payment; bad creation input.
Each answers the error envelope with a clear code and changes nothing (packet state, money, ledger)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from app.core.clock import dev_clock
from app.core.db import utcnow
from app.core.money import Money
from app.ledger.accounts import campaign_accounts, prepaid_account
from app.orders.models import Order
from app.payments.models import Refund
from app.personal.models import PersonalPacket
from app.personal.service import AccountBanned, claim_packet
from app.red_packets.models import RedPacket
from tests.personal.conftest import Personal, ledger_clean


@pytest.fixture(autouse=True)
def real_time_afterwards(app: Flask) -> Iterator[None]:
    yield
    clock = dev_clock(app)
    assert clock is not None
    clock.reset()


def _refused(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.json
    error = response.json["error"]
    assert error["code"] == code and error["message"], error
    return dict(error)


def _state(personal: Personal, db_session: Session, packet_id: int) -> tuple[Any, ...]:
    """Everything a refused call must leave as it was."""
    db_session.expire_all()
    packet = db_session.get(PersonalPacket, packet_id)
    assert packet is not None
    accounts = campaign_accounts(personal.shop.merchant.id, personal.campaign_id)
    return (
        packet.status,
        packet.friend_id,
        packet.red_packet_id,
        packet.sender_outcome,
        packet.friend_outcome,
        prepaid_account(personal.shop.merchant.id, personal.shop.consumer_id).balance,
        accounts.budget.balance,
        accounts.reserved.balance,
        db_session.scalar(select(func.count()).select_from(Refund)),
    )


def test_claims_refused(personal: Personal, db_session: Session) -> None:
    packet = personal.funded()
    code = personal.packet(packet["id"])["share_code"]
    before = _state(personal, db_session, packet["id"])

    _refused(personal.claim(packet["id"], None, code), 403, "own_packet")  # the sender
    _refused(personal.claim(packet["id"], personal.carol), 403, "not_your_packet")  # no share code
    _refused(personal.claim(packet["id"], personal.carol, "x" * 22), 403, "not_your_packet")  # a wrong one
    unsigned = personal.shop.client.post(f"/api/mp/v1/personal-packets/{packet['id']}/claim", json={})
    _refused(unsigned, 401, "unauthenticated")
    _refused(personal.claim(packet["id"] + 1000, personal.bob, code), 404, "not_found")
    # A stranger cannot even read it without the share code.
    stranger = personal.shop.client.get(
        f"/api/mp/v1/personal-packets/{packet['id']}", headers=personal.headers(personal.carol)
    )
    _refused(stranger, 404, "not_found")
    assert _state(personal, db_session, packet["id"]) == before

    assert personal.claim(packet["id"], personal.bob, code).status_code == 200
    after = _state(personal, db_session, packet["id"])
    _refused(personal.claim(packet["id"], personal.bob, code), 409, "already_claimed")
    _refused(personal.claim(packet["id"], personal.carol, code), 403, "not_your_packet")
    assert _state(personal, db_session, packet["id"]) == after
    ledger_clean()


def test_a_packet_for_a_named_friend_is_theirs_only(personal: Personal, db_session: Session) -> None:
    packet = personal.funded(friend_id=personal.bob.consumer_id)
    code = personal.packet(packet["id"])["share_code"]
    before = _state(personal, db_session, packet["id"])
    _refused(personal.claim(packet["id"], personal.carol, code), 403, "not_your_packet")
    assert _state(personal, db_session, packet["id"]) == before
    claimed = personal.claim(packet["id"], personal.bob)  # no code needed: it names him
    assert claimed.status_code == 200 and claimed.json["status"] == "claimed"
    ledger_clean()


def test_a_banned_account_cannot_claim(personal: Personal, db_session: Session) -> None:
    packet = personal.funded()
    code = personal.packet(packet["id"])["share_code"]
    before = _state(personal, db_session, packet["id"])
    banned = personal.console.post(
        f"/api/console/v1/consumers/{personal.bob.consumer_id}/ban", json={"reason": "fake orders"}
    )
    assert banned.status_code == 200, banned.json
    _refused(personal.claim(packet["id"], personal.bob, code), 401, "unauthenticated")  # sessions ended
    # Behind the sessions, the claim itself refuses a banned consumer too.
    with pytest.raises(AccountBanned):
        claim_packet(
            merchant_id=personal.shop.merchant.id,
            consumer_id=personal.bob.consumer_id,
            packet_id=packet["id"],
            share_code=code,
        )
    db_session.rollback()
    assert _state(personal, db_session, packet["id"]) == before


def test_a_claim_after_the_window_is_refused(personal: Personal, app: Flask, db_session: Session) -> None:
    packet = personal.funded()
    code = personal.packet(packet["id"])["share_code"]
    before = _state(personal, db_session, packet["id"])
    moved = app.test_cli_runner().invoke(args=["dev", "clock", "advance", "25h", "--no-run-due"])
    assert moved.exit_code == 0, moved.output
    personal.sign_in_again()
    _refused(personal.claim(packet["id"], personal.bob, code), 409, "claim_window_closed")
    assert _state(personal, db_session, packet["id"]) == before


def test_a_challenge_confirmed_by_a_third_party_is_refused(personal: Personal, db_session: Session) -> None:
    deadline = (utcnow() + timedelta(hours=2)).isoformat()
    packet = personal.funded(challenge="steps", challenge_target=10000, challenge_deadline=deadline)
    code = personal.packet(packet["id"])["share_code"]
    claimed = personal.claim(packet["id"], personal.bob, code)
    assert claimed.status_code == 200 and claimed.json["status"] == "awaiting_sender", claimed.json
    assert claimed.json["red_packet_id"] is None  # nothing issued until alice confirms
    before = _state(personal, db_session, packet["id"])
    for outcome in ("won", "lost"):
        _refused(personal.confirm(packet["id"], personal.carol, outcome), 403, "not_a_party")
    _refused(personal.confirm(packet["id"], personal.bob, "won"), 409, "already_claimed")
    assert _state(personal, db_session, packet["id"]) == before

    confirmed = personal.confirm(packet["id"], None, "won")
    assert confirmed.status_code == 200, confirmed.json
    assert (confirmed.json["status"], confirmed.json["sender_outcome"]) == ("claimed", "won")
    assert confirmed.json["red_packet_id"] is not None
    _refused(personal.confirm(packet["id"], None, "won"), 409, "already_confirmed")
    ledger_clean()


def test_a_lost_challenge_refunds_the_sender(personal: Personal, db_session: Session) -> None:
    deadline = (utcnow() + timedelta(hours=2)).isoformat()
    packet = personal.funded(
        amount_fen=500, friend_id=personal.bob.consumer_id, challenge="check_in", challenge_deadline=deadline
    )
    # The window runs from the challenge's deadline, not from the payment.
    assert personal.packet(packet["id"])["claim_deadline"] > deadline
    _refused(personal.confirm(packet["id"], personal.carol, "lost"), 403, "not_a_party")
    lost = personal.confirm(packet["id"], None, "lost")
    assert lost.status_code == 200 and lost.json["status"] == "refunding", lost.json
    _refused(personal.claim(packet["id"], personal.bob), 409, "packet_not_claimable")
    personal.resolve_refund(db_session, packet["id"])
    assert personal.packet(packet["id"])["status"] == "refunded"
    assert prepaid_account(personal.shop.merchant.id, personal.shop.consumer_id).balance == Money(0)
    ledger_clean()


def test_a_shop_refund_of_the_funding_payment_is_refused(personal: Personal, db_session: Session) -> None:
    packet = personal.funded()
    out_order_no = f"personal:{packet['id']}"
    before = _state(personal, db_session, packet["id"])
    refund = personal.shop.refund(out_order_no, "R-STEAL", 2000)
    _refused(refund, 409, "personal_packet_funding")
    order = db_session.scalars(select(Order).where(Order.out_order_no == out_order_no)).one()
    db_session.refresh(order)
    assert (order.refund_committed, order.refunded) == (Money(0), Money(0))
    assert _state(personal, db_session, packet["id"]) == before
    ledger_clean()


def test_bad_creation_input(personal: Personal, db_session: Session) -> None:
    count = db_session.scalar(select(func.count()).select_from(PersonalPacket))
    _refused(personal.create(amount_fen=99), 422, "validation_error")
    _refused(personal.create(amount_fen=20001), 422, "validation_error")
    _refused(personal.create(amount_fen=20.5), 422, "validation_error")
    _refused(personal.create(friend_id=personal.shop.consumer_id), 422, "validation_error")
    _refused(personal.create(challenge="steps"), 422, "validation_error")  # no deadline, no target
    _refused(personal.create(campaign_id=999999), 409, "personal_packets_not_offered")
    unsigned = personal.shop.client.post(
        "/api/mp/v1/personal-packets", json={"campaign_id": 1, "amount_fen": 500}
    )
    _refused(unsigned, 401, "unauthenticated")
    assert db_session.scalar(select(func.count()).select_from(PersonalPacket)) == count


def test_console_lists_and_filters(personal: Personal, db_session: Session) -> None:
    first = personal.funded()
    second = personal.funded(amount_fen=300)
    assert (
        personal.claim(first["id"], personal.bob, personal.packet(first["id"])["share_code"]).status_code
        == 200
    )
    listed = personal.console.get("/api/console/v1/personal-packets")
    assert listed.status_code == 200, listed.json
    assert [(p["id"], p["status"]) for p in listed.json] == [
        (second["id"], "funded"),
        (first["id"], "claimed"),
    ]
    assert "share_code" not in listed.json[0]
    claimed = personal.console.get("/api/console/v1/personal-packets?status=claimed").json
    assert [p["id"] for p in claimed] == [first["id"]]
    bobs = personal.console.get(
        f"/api/console/v1/personal-packets?consumer_id={personal.bob.consumer_id}"
    ).json
    assert [p["id"] for p in bobs] == [first["id"]]
    _refused(personal.console.get("/api/console/v1/personal-packets?status=lost"), 422, "validation_error")
    terms = personal.console.get(f"/api/console/v1/campaigns/{personal.campaign_id}/personal-terms")
    assert terms.json["sender_rate_bp"] == 1000


def test_a_claim_the_campaign_cannot_fund_is_refused(personal: Personal, db_session: Session) -> None:
    # 10% of a ¥20,000 max order is a ¥2,000 worst case: more than the campaign's ¥1,000 budget.
    terms = personal.shop.client.put(
        f"/api/console/v1/campaigns/{personal.campaign_id}/personal-terms",
        json={
            "sender_rate_bp": 1000,
            "min_amount_fen": 100,
            "max_amount_fen": 20000,
            "max_order_fen": 2_000_000,
            "valid_days": 30,
        },
        headers=personal.console.headers(),
    )
    assert terms.status_code == 200, terms.json
    packet = personal.funded()
    before = _state(personal, db_session, packet["id"])
    code = personal.packet(packet["id"])["share_code"]
    _refused(personal.claim(packet["id"], personal.bob, code), 409, "campaign_budget_exhausted")
    assert _state(personal, db_session, packet["id"]) == before
    assert db_session.scalar(select(func.count()).select_from(RedPacket)) == 0
    ledger_clean()


def test_terms_are_validated(personal: Personal) -> None:
    url = f"/api/console/v1/campaigns/{personal.campaign_id}/personal-terms"
    base = {
        "sender_rate_bp": 1000,
        "min_amount_fen": 100,
        "max_amount_fen": 20000,
        "max_order_fen": 100000,
        "valid_days": 30,
    }
    for bad in (
        {"sender_rate_bp": 0},
        {"max_amount_fen": 20001},  # WeChat's ¥200 red-packet ceiling
        {"min_amount_fen": 5000, "max_amount_fen": 1000},
        {"min_spend_fen": 200000},  # above max_order_fen
        {"sender_rate_bp": 1, "max_order_fen": 99},  # the rebate rounds to 0 fen
    ):
        response = personal.shop.client.put(url, json=base | bad, headers=personal.console.headers())
        _refused(response, 422, "validation_error")
    before = personal.console.get(url).json
    assert before["max_amount_fen"] == 20000 and before["sender_rate_bp"] == 1000
    other = personal.shop.client.put(
        "/api/console/v1/campaigns/999999/personal-terms", json=base, headers=personal.console.headers()
    )
    _refused(other, 404, "not_found")
