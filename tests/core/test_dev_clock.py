"""The development clock: `flask dev clock advance` moves Hongli's business time and the sandbox's together
and runs the sweeps that became due; production has no such clock and refuses the commands."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import click
import click.testing
import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.clock import CACHE_SECONDS, dev_clock
from app.core.db import utcnow
from app.devclock.cli import Duration
from app.devclock.due import DUE_JOBS, NOT_DUE_JOBS
from app.ledger.accounts import campaign_accounts, consumer_accounts
from app.ledger.checks import run_checks
from app.queue.periodic import PERIODIC_JOBS
from app.red_packets.models import RedPacket, RedPacketStatus
from app.settings import Env, Settings
from tests.campaign_setup import start_campaign
from tests.conftest import AppFactory
from tests.payments.conftest import Shop

DAY = 86400


def _two_way(packet_valid_days: int) -> dict[str, object]:
    return {
        "rules": [
            {
                "id": "two-way",
                "kind": "two_way",
                "priority": 10,
                "stacking": "combinable",
                "trigger_min_order_fen": 20000,
                "packet_value_fen": 1000,
                "packet_min_spend_fen": 5000,
                "packet_valid_days": packet_valid_days,
                "issuer_rate_bp": 1000,
                "buyer_rate_bp": 500,
                "max_order_fen": 100000,
            }
        ]
    }


@pytest.fixture(autouse=True)
def real_time_afterwards(app: Flask) -> Iterator[None]:
    """Every test here leaves business time as it found it (the app is shared by the whole run)."""
    yield
    clock = dev_clock(app)
    assert clock is not None
    clock.reset()


def _dev(app: Flask, *args: str) -> click.testing.Result:
    return app.test_cli_runner().invoke(args=["dev", *args])


def _offset() -> timedelta:
    return utcnow() - datetime.now(UTC)


def _ledger_clean() -> None:
    assert [result for result in run_checks() if result.violations] == []


def test_advancing_past_the_after_sales_window_settles_and_moves_the_sandbox(
    shop: Shop, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    campaign = start_campaign(shop, app, client, _two_way(30), name="Two-way")
    first = shop.register("DC-1", 20000)
    shop.pay(first["id"])
    packet = shop.client.get("/api/mp/v1/red-packets", headers=shop.consumer_headers).json[0]
    second = shop.register("DC-2", 5000)
    assert shop.pay_params(second["id"], red_packet_id=packet["id"]).status_code == 200
    shop.sandbox.post(f"/transactions/{shop.out_trade_no(second['id'])}/pay", {"mchid": shop.merchant.mchid})
    received = shop.client.post(
        "/api/shop/v1/orders/DC-2/events",
        headers=shop.shop_headers,
        json={"type": "received", "occurred_at": utcnow().isoformat()},
    )
    assert received.status_code == 200, received.json
    wallet = consumer_accounts(shop.merchant.id, shop.consumer_id)
    assert (wallet.pending.balance.fen, wallet.available.balance.fen) == (250, 0)

    # Six days: the 7-day window is still open; nothing settles, but both clocks moved.
    sandbox_before = shop.sandbox.world.clock.now()
    six = _dev(app, "clock", "advance", "6d")
    assert six.exit_code == 0, six.output
    assert "settle-rebates: 0" in six.output
    assert abs(_offset() - timedelta(days=6)) < timedelta(seconds=5)
    sandbox_moved = shop.sandbox.world.clock.now() - sandbox_before
    assert 6 * DAY <= sandbox_moved < 6 * DAY + 10
    assert abs(shop.sandbox.world.clock.now() - utcnow().timestamp()) < 2  # one clock
    db_session.expire_all()
    assert (wallet.pending.balance.fen, wallet.available.balance.fen) == (250, 0)

    # Two more days: the window has passed; the sweep ran in the command; pending → available, to the fen.
    eight = _dev(app, "clock", "advance", "2d")
    assert eight.exit_code == 0, eight.output
    assert "settle-rebates: 1" in eight.output
    assert abs(_offset() - timedelta(days=8)) < timedelta(seconds=5)
    assert 8 * DAY <= shop.sandbox.world.clock.now() - sandbox_before < 8 * DAY + 10
    db_session.expire_all()
    assert (wallet.pending.balance.fen, wallet.available.balance.fen) == (0, 250)
    budget = campaign_accounts(shop.merchant.id, campaign)
    assert budget.budget.balance.fen == 100000 - 1000 - 500 - 250
    _ledger_clean()

    shown = _dev(app, "clock", "show")
    assert shown.exit_code == 0, shown.output
    assert "real time + 8 days" in shown.output and "in step with hongli" in shown.output


def test_advancing_past_a_red_packets_validity_expires_it_and_releases_its_reservation(
    shop: Shop, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    campaign = start_campaign(shop, app, client, _two_way(3), name="Short packets")
    order = shop.register("DC-EXP-1", 20000)
    shop.pay(order["id"])
    budget = campaign_accounts(shop.merchant.id, campaign)
    worst_case = 1000 + 10000 + 5000
    assert (budget.budget.balance.fen, budget.reserved.balance.fen) == (100000 - worst_case, worst_case)

    early = _dev(app, "clock", "advance", "2d23h")
    assert early.exit_code == 0, early.output
    assert "expire-red-packets: 0" in early.output

    later = _dev(app, "clock", "advance", "2h")
    assert later.exit_code == 0, later.output
    assert "expire-red-packets: 1" in later.output
    db_session.expire_all()
    packet = db_session.scalars(select(RedPacket).where(RedPacket.consumer_id == shop.consumer_id)).one()
    assert packet.status is RedPacketStatus.EXPIRED
    assert (budget.budget.balance.fen, budget.reserved.balance.fen) == (100000, 0)
    _ledger_clean()


def test_run_due_and_no_run_due(shop: Shop, app: Flask, db_session: Session) -> None:
    moved = _dev(app, "clock", "advance", "90m", "--no-run-due")
    assert moved.exit_code == 0, moved.output
    assert "settle-rebates" not in moved.output
    assert abs(_offset() - timedelta(minutes=90)) < timedelta(seconds=5)
    swept = _dev(app, "run-due")
    assert swept.exit_code == 0, swept.output
    assert [line.split(":")[0] for line in swept.output.splitlines()] == [job.name for job in DUE_JOBS]


def test_sync_catches_hongli_up_with_a_sandbox_advanced_on_its_own(
    shop: Shop, app: Flask, db_session: Session
) -> None:
    shop.sandbox.post("/clock/advance", {"seconds": 3600})
    apart = _dev(app, "clock", "show")
    assert "AHEAD of hongli" in apart.output
    synced = _dev(app, "clock", "sync")
    assert synced.exit_code == 0, synced.output
    assert abs(_offset() - timedelta(hours=1)) < timedelta(seconds=5)
    assert abs(shop.sandbox.world.clock.now() - utcnow().timestamp()) < 2
    assert "in step with hongli" in _dev(app, "clock", "show").output

    reset = _dev(app, "clock", "reset")
    assert reset.exit_code == 0
    assert abs(_offset()) < timedelta(seconds=5)
    assert "only moves forward" in reset.output


def test_the_sandbox_unreachable_is_said_and_fails_the_command(
    app_factory: AppFactory, settings: Settings, redis: redis_lib.Redis
) -> None:
    # No sandbox answers at this address (nothing listens on the discard port of the loopback).
    nowhere = "http://127.0.0.1:9"
    wechat = settings.wechat.model_copy(
        update={"api_base_url": nowhere, "pay_base_url": nowhere, "open_base_url": nowhere}
    )
    elsewhere = settings.model_copy(update={"wechat": wechat})
    lonely = app_factory(elsewhere)
    with lonely.app_context():
        result = _dev(lonely, "clock", "advance", "1h", "--no-run-due")
        assert result.exit_code == 1
        assert "NOT moved" in result.output and "dev clock sync" in result.output
        clock = dev_clock(lonely)
        assert clock is not None
        clock.reset()


def test_production_refuses_the_commands_and_ignores_the_offset(
    app_factory: AppFactory, settings: Settings, redis: redis_lib.Redis
) -> None:
    production = app_factory(settings.model_copy(update={"env": Env.PRODUCTION}))
    development = app_factory(settings)
    clock = dev_clock(development)
    assert clock is not None and dev_clock(production) is None
    redis.set(clock.key, 10 * DAY)  # as if someone set it, or a development deployment shares the prefix
    try:
        with development.app_context():
            assert abs(_offset() - timedelta(days=10)) < timedelta(seconds=5)
        with production.app_context():
            assert abs(_offset()) < timedelta(seconds=5)
            for args in (["clock", "advance", "1d"], ["clock", "show"], ["clock", "reset"], ["run-due"]):
                refused = _dev(production, *args)
                assert refused.exit_code == 1, (args, refused.output)
                assert 'env = "production"' in refused.output
        assert int(redis.get(clock.key) or 0) == 10 * DAY  # untouched by the refused commands
    finally:
        clock.reset()


def test_every_periodic_sweep_is_run_by_run_due_or_named_as_not_due() -> None:
    assert {job.name for job in PERIODIC_JOBS} == {job.replaces for job in DUE_JOBS} | NOT_DUE_JOBS


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("8d", 8 * DAY), ("36h", 36 * 3600), ("90m", 5400), ("45", 45), ("1d12h", 36 * 3600)],
)
def test_durations(text: str, seconds: int) -> None:
    assert Duration().convert(text, None, None) == seconds


@pytest.mark.parametrize("text", ["0", "-1d", "8x", "", "²", "1d 2x", "9" * 40, "4000d"])
def test_durations_refused(text: str) -> None:
    with pytest.raises(click.BadParameter):
        Duration().convert(text, None, None)


def test_another_process_advancing_is_seen_within_the_cache_interval(
    app: Flask, redis: redis_lib.Redis
) -> None:
    clock = dev_clock(app)
    assert clock is not None
    redis.set(clock.key, DAY)  # as `flask dev clock advance 1d` in another process does
    time.sleep(CACHE_SECONDS + 0.05)
    assert abs(_offset() - timedelta(days=1)) < timedelta(seconds=5)
