"""The rebate engine's ledger checks: part of ``flask ledger check``, clean after real bookings, and
each one names the corruption it exists to catch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.orm import Session

import tests.rebates.test_stateful as stateful
from app.core.money import Money
from app.extensions import db
from app.ledger.accounts import campaign_accounts, consumer_accounts
from app.ledger.checks import registered_checks
from app.ledger.models import EntryReason
from app.ledger.service import post_entry
from app.rebates.models import RebateGrant
from app.red_packets.models import RedPacket, RedPacketStatus
from tests.factories import make_consumer
from tests.sandbox import Sandbox

REBATE_CHECKS = {
    "rebates.one_credit_per_source_event",
    "rebates.campaign_never_overspent",
    "rebates.red_packet_reservation_consistent",
}


def _check(app: Flask) -> tuple[int, list[str]]:
    result = app.test_cli_runner().invoke(args=["ledger", "check"])
    return result.exit_code, result.output.splitlines()


@pytest.fixture
def booked(
    app: Flask, sandbox: Sandbox, db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> Iterator[int]:
    """A campaign after two orders: the first earned a red packet, the second spent one and earned
    another (so grants from the budget and from a reservation, and a live packet). Yields its id."""
    merchant = sandbox.onboard("checks-tea")
    world = stateful.World(merchant, [make_consumer(merchant).id])
    machine = stateful.make_machine(world)()
    buyer = world.consumers[0]
    machine._pay(buyer, 60_000, None)
    machine._pay(buyer, 60_000, machine._live_packets()[0])
    machine.check_all()
    yield machine.campaign.id
    machine.teardown()


def test_the_rebate_checks_run_with_ledger_check_and_pass(app: Flask, booked: int) -> None:
    assert set(registered_checks()) >= REBATE_CHECKS
    code, lines = _check(app)
    assert code == 0, lines
    assert lines[-1].startswith(f"ledger clean: {len(registered_checks())} checks passed")


def test_a_grant_that_disagrees_with_its_entry_is_named(app: Flask, booked: int, db_session: Session) -> None:
    grant = db_session.scalars(select(RebateGrant).where(RebateGrant.rule_id == "ratio")).first()
    assert grant is not None
    db_session.execute(text("UPDATE rebate_grants SET amount = amount + 1 WHERE id = :id"), {"id": grant.id})

    code, lines = _check(app)

    assert code == 1
    assert any(
        line.startswith(
            f"rebates.one_credit_per_source_event: grant {grant.id} of {grant.amount.fen + 1} fen"
        )
        for line in lines
    ), lines
    assert any(line.startswith("rebates.campaign_never_overspent: campaign") for line in lines), lines


def test_a_credit_without_a_grant_is_named(app: Flask, booked: int, db_session: Session) -> None:
    grant = db_session.scalars(select(RebateGrant).where(RebateGrant.rule_id == "ratio")).first()
    assert grant is not None
    # A second credit for the same order and rule, written around the engine (a different beneficiary).
    entry = post_entry(
        key=f"grant:{grant.order_id}:{grant.rule_version_id}:ratio:invitee",
        reason=EntryReason.REBATE_PENDING,
        cause_type="order",
        cause_id=str(grant.order_id),
        lines=[
            (campaign_accounts(grant.merchant_id, booked).budget, Money(-5)),
            (consumer_accounts(grant.merchant_id, grant.consumer_id or 0).pending, Money(5)),
        ],
        merchant_id=grant.merchant_id,
    )
    assert entry is not None

    code, lines = _check(app)

    assert code == 1
    assert (
        f"rebates.one_credit_per_source_event: entry {entry.id} ({entry.idempotency_key}) "
        "credits a grant that was never recorded"
    ) in lines


def test_reservations_out_of_step_with_packets_are_named(
    app: Flask, booked: int, db_session: Session
) -> None:
    live = db_session.scalars(select(RedPacket).where(RedPacket.status == RedPacketStatus.ISSUED)).one()
    # Expired without giving its reservation back (the expiry sweep's release skipped).
    db_session.execute(text("UPDATE red_packets SET status = 'expired' WHERE id = :id"), {"id": live.id})
    db.session.expire_all()

    code, lines = _check(app)

    assert code == 1
    assert (
        f"rebates.red_packet_reservation_consistent: red packet {live.id} is expired with "
        f"{live.reserved.fen} fen reserved, order None"
    ) in lines
    assert (
        f"rebates.campaign_never_overspent: campaign {booked}: reserve holds {live.reserved.fen} fen, "
        "live red packets 0 fen"
    ) in lines


def test_a_packet_whose_reserve_does_not_match_the_ledger_is_named(
    app: Flask, booked: int, db_session: Session
) -> None:
    live = db_session.scalars(select(RedPacket).where(RedPacket.status == RedPacketStatus.ISSUED)).one()
    db_session.execute(
        text("UPDATE red_packets SET reserved = reserved - 100 WHERE id = :id"), {"id": live.id}
    )

    code, lines = _check(app)

    assert code == 1
    assert any(
        line.startswith(
            f"rebates.red_packet_reservation_consistent: red packet {live.id}: {live.reserved.fen - 100} fen "
            f"reserved, but the ledger reserved net {live.reserved.fen} fen"
        )
        for line in lines
    ), lines
