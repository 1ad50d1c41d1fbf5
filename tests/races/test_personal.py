"""Personal red packet races: the friend claiming twice at once, and a claim against the sweep that refunds
the packet as unclaimed. The packet's status UPDATE decides: one red packet or one refund, never both, and
the sender's money is counted once (prepaid, reserve, refund)."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from sqlalchemy import func, select, update

from app.audit.service import CLI
from app.core.db import utcnow
from app.core.money import Money
from app.extensions import db
from app.ledger.models import AccountKind
from app.payments.models import Refund
from app.personal.models import PersonalPacket, PersonalPacketStatus
from app.personal.service import refund_due, set_terms
from app.red_packets.models import RedPacket
from tests.races.conftest import Answer, Buyer, Race

pytestmark = pytest.mark.race

ROUNDS = 12
AMOUNT = 2000
SENDER_WORST_CASE = 10000  # 10% of the ¥1,000 max order
RULES = {
    "rules": [
        {
            "id": "ratio",
            "kind": "ratio",
            "priority": 1,
            "stacking": "combinable",
            "rate_bp": 100,
            "min_order_fen": 10_000_000,
        }
    ]
}


def _offering(race: Race) -> int:
    campaign_id = race.campaign(RULES, budget_fen=SENDER_WORST_CASE * (ROUNDS + 1))
    with race.context():
        set_terms(
            merchant_id=race.merchant_id,
            campaign_id=campaign_id,
            document={
                "sender_rate_bp": 1000,
                "min_amount": Money(100),
                "max_amount": Money(20000),
                "min_spend": Money(0),
                "max_order": Money(100000),
                "valid_days": 30,
            },
            actor=CLI,
        )
        db.session.commit()
    return campaign_id


def _funded(race: Race, campaign_id: int, sender: Buyer) -> tuple[int, str]:
    """A packet the sender created and paid (the sandbox notifies): (id, share code)."""
    created = race.post(
        "/api/mp/v1/personal-packets",
        json={"campaign_id": campaign_id, "amount_fen": AMOUNT},
        headers=race.mp_headers(sender),
    )
    assert created.status == 201, str(created)
    paid = race.user_pays(created.body["payment"]["sandbox"]["out_trade_no"])
    assert paid.ok, str(paid)
    packet_id = int(created.body["packet"]["id"])
    assert _packet(race, packet_id)["status"] is PersonalPacketStatus.FUNDED
    return packet_id, str(created.body["share_code"])


def _packet(race: Race, packet_id: int) -> dict[str, Any]:
    with race.context():
        packet = db.session.get(PersonalPacket, packet_id)
        assert packet is not None
        red = db.session.scalar(
            select(func.count())
            .select_from(RedPacket)
            .where(RedPacket.issuer_consumer_id == packet.sender_id)
        )
        refunds = db.session.scalar(
            select(func.count()).select_from(Refund).where(Refund.out_refund_no == f"personal:{packet_id}")
        )
        return {"status": packet.status, "red_packets": red, "refunds": refunds, "friend": packet.friend_id}


def _claim(race: Race, packet_id: int, friend: Buyer, code: str) -> Answer:
    return race.post(
        f"/api/mp/v1/personal-packets/{packet_id}/claim",
        json={"share_code": code},
        headers=race.mp_headers(friend),
    )


def test_a_friend_claiming_twice_at_once_gets_one_red_packet(race: Race) -> None:
    campaign_id = _offering(race)

    def round_(_: int) -> None:
        sender, friend = race.buyer(), race.buyer()
        packet_id, code = _funded(race, campaign_id, sender)
        answers = race.race([partial(_claim, race, packet_id, friend, code) for _ in range(3)])
        race.assert_clean(answers)
        won = [a for a in answers if a.ok]
        assert len(won) == 1, [str(a) for a in answers]
        assert all(a.code == "already_claimed" or a.busy for a in answers if not a.ok), [
            str(a) for a in answers
        ]
        state = _packet(race, packet_id)
        assert (state["status"], state["red_packets"], state["refunds"], state["friend"]) == (
            PersonalPacketStatus.CLAIMED,
            1,
            0,
            friend.consumer_id,
        )
        assert race.balance(AccountKind.CONSUMER_PREPAID, sender.consumer_id) == 0

    race.rounds(round_, n=ROUNDS)
    assert race.balance(AccountKind.CAMPAIGN_RESERVED, campaign_id) == ROUNDS * (AMOUNT + SENDER_WORST_CASE)


def test_a_claim_racing_the_unclaimed_refund_sweep_is_one_or_the_other(race: Race) -> None:
    campaign_id = _offering(race)
    outcomes = {"claimed": 0, "refunding": 0}

    def round_(round_no: int) -> None:
        sender, friend = race.buyer(), race.buyer()
        packet_id, code = _funded(race, campaign_id, sender)
        # The claim window still open for the web's clock; the sweep's clock (a worker's) says it closed:
        # only the packet's conditional status UPDATE can keep them apart.
        with race.context():
            db.session.execute(
                update(PersonalPacket)
                .where(PersonalPacket.id == packet_id)
                .values(claim_deadline=utcnow() + timedelta(seconds=30))
            )
            db.session.commit()
        later = utcnow() + timedelta(minutes=5)
        claim, sweep = race.staggered(
            round_no, partial(_claim, race, packet_id, friend, code), partial(race.call, refund_due, later)
        )
        race.assert_clean([claim, sweep])
        state = _packet(race, packet_id)
        prepaid = race.balance(AccountKind.CONSUMER_PREPAID, sender.consumer_id)
        if state["status"] is PersonalPacketStatus.CLAIMED:
            assert claim.ok and (sweep.value == 0 or sweep.busy), (str(claim), str(sweep))
            assert (state["red_packets"], state["refunds"], prepaid) == (1, 0, 0)
            outcomes["claimed"] += 1
        elif state["status"] is PersonalPacketStatus.FUNDED:
            # SQLite only: both were told "busy" and nothing changed.
            assert claim.busy and sweep.busy, (str(claim), str(sweep))
            assert (state["red_packets"], state["refunds"], prepaid) == (0, 0, AMOUNT)
        else:
            assert state["status"] is PersonalPacketStatus.REFUNDING, state
            assert not claim.ok and (claim.code == "packet_not_claimable" or claim.busy), str(claim)
            assert sweep.value == 1, str(sweep)
            # The refund is asked for; the money stays the sender's until WeChat confirms it.
            assert (state["red_packets"], state["refunds"], prepaid) == (0, 1, AMOUNT)
            outcomes["refunding"] += 1

    race.rounds(round_, n=ROUNDS)
    assert sum(outcomes.values()) >= ROUNDS - 2  # (SQLite may answer busy to both in a round)
