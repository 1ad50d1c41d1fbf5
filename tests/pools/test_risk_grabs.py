"""The risk engine inside a grab's Redis step (docs/risk.md, docs/pools.md): the claim's counters run in the
pool's own Lua step, so a refused grab takes no share — the script itself refuses it, the Python side's
safety net (which would give a wrongly taken share back, logging an error) never acts — and an allowed
grab's decision and new links are written with the grant (in its own statement on PostgreSQL), merging
linked accounts. On every engine: PostgreSQL, SQLite, PostgreSQL behind PgBouncer."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib
from sqlalchemy import select

from app.audit.service import CLI
from app.extensions import db
from app.pools import hot
from app.risk.links import group_of
from app.risk.models import Outcome, RiskDecision
from app.risk.service import update_policy
from app.settings import Settings
from tests.pools.helpers import RULES, crowd, grab, grants, open_pool
from tests.races.conftest import ENGINES, Answer, Buyer, Race


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def script_refuses_alone(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No share was taken for a refused claim and given back by the Python side (nor the reverse)."""
    with caplog.at_level(logging.ERROR, logger="hongli.pools"):
        yield
    assert [r.getMessage() for r in caplog.get_records("call") if r.name == "hongli.pools"] == []


# Every grab of these tests comes from the test client's one address.
QUIET_IP = {"ip_claims_per_day": 0, "ip_min_interval_seconds": 0, "new_accounts_per_ip_per_day": 0}


def _policy(race: Race, **changes: Any) -> None:
    with race.context():
        update_policy(merchant_id=race.merchant_id, changes=changes, actor=CLI)
        db.session.commit()


def _device(race: Race) -> str:
    answer = race.post("/api/mp/v1/risk/device")
    assert answer.status == 201, answer.body
    return str(answer.body["device_token"])


def _grab_on(race: Race, buyer: Buyer, pool_id: int, device: str) -> Answer:
    headers = race.mp_headers(buyer) | {"X-Hongli-Device": device}
    return race.post(f"/api/mp/v1/pools/{pool_id}/grab", json={}, headers=headers)


def _decisions(race: Race, pool_id: int) -> list[tuple[int, Outcome, list[str]]]:
    with race.context():
        return [
            (int(c), o, list(r))
            for c, o, r in db.session.execute(
                select(RiskDecision.consumer_id, RiskDecision.outcome, RiskDecision.reasons)
                .where(RiskDecision.reference == f"pool:{pool_id}")
                .order_by(RiskDecision.id)
            )
        ]


def _redis_state(race: Race, settings: Settings, pool_id: int) -> tuple[int, set[int]]:
    with race.context():
        keys = hot.PoolKeys(hot.Ref(race.merchant_id, pool_id))
    connection = redis_lib.Redis.from_url(settings.redis.url)
    try:
        return int(connection.llen(keys.left)), {int(c) for c in connection.smembers(keys.who)}
    finally:
        connection.close()


def test_a_grab_the_engine_refuses_takes_no_share(race: Race, race_settings: Settings) -> None:
    campaign_id = race.campaign(RULES, budget_fen=100_000)
    pool_id = open_pool(race, campaign_id, total_fen=1000, count=10)
    # Seed 000's interval: a second claim from one IP within 10 minutes is refused.
    _policy(race, enforce=True, new_accounts_per_ip_per_day=0)
    first, second = crowd(race, 2)

    assert grab(race, first, pool_id).status == 201
    refused = grab(race, second, pool_id)

    assert (refused.status, refused.code) == (429, "risk_limited")
    assert refused.body["error"]["details"]["reasons"] == ["ip_min_interval"]
    assert [g.consumer_id for g in grants(race, pool_id)] == [first.consumer_id]
    # Nothing was taken in Redis: nine shares left, only the first grabber marked.
    assert _redis_state(race, race_settings, pool_id) == (9, {first.consumer_id})
    # Both decisions are kept: the allowed one with its grant, the refusal alone.
    assert _decisions(race, pool_id) == [
        (first.consumer_id, Outcome.ALLOW, []),
        (second.consumer_id, Outcome.LIMIT, ["ip_min_interval"]),
    ]
    assert race.violations() == set()


def test_new_accounts_on_one_device_and_a_linked_group_are_refused_in_the_redis_step(
    race: Race, race_settings: Settings
) -> None:
    campaign_id = race.campaign(RULES, budget_fen=100_000)
    pool_a = open_pool(race, campaign_id, total_fen=1000, count=10)
    pool_b = open_pool(race, campaign_id, total_fen=1000, count=10)
    # A phone's third new account of the day is refused (rank 2 ≥ 2); groups are not limited yet.
    _policy(race, enforce=True, new_accounts_per_device_per_day=2, max_group_size=0, **QUIET_IP)
    phone = _device(race)
    one, two, three = crowd(race, 3)

    assert _grab_on(race, one, pool_a, phone).status == 201
    assert _grab_on(race, two, pool_a, phone).status == 201
    # The second grab's own statement wrote its device link, found the first one's and merged them.
    with race.context():
        assert group_of(merchant_id=race.merchant_id, consumer_id=two.consumer_id)[1] == sorted(
            [one.consumer_id, two.consumer_id]
        )
    third = _grab_on(race, three, pool_a, phone)

    assert (third.status, third.code) == (429, "risk_limited")
    assert third.body["error"]["details"]["reasons"] == ["new_accounts_per_device"]
    assert sorted(g.consumer_id for g in grants(race, pool_a)) == sorted([one.consumer_id, two.consumer_id])
    assert _redis_state(race, race_settings, pool_a) == (8, {one.consumer_id, two.consumer_id})
    # The refused third one's decision (committed alone) linked its account too: a farm's attempts count.
    with race.context():
        group_id, members = group_of(merchant_id=race.merchant_id, consumer_id=two.consumer_id)
    assert members == sorted([one.consumer_id, two.consumer_id, three.consumer_id])
    assert group_id == min(members)

    # Now a linked group of more than one is refused (the group's size is read in the same step).
    _policy(race, enforce=True, new_accounts_per_device_per_day=0, max_group_size=1, **QUIET_IP)
    grouped = _grab_on(race, one, pool_b, phone)
    assert (grouped.status, grouped.code) == (429, "risk_limited")
    assert grouped.body["error"]["details"]["reasons"] == ["linked_group"]
    assert grants(race, pool_b) == []
    assert _redis_state(race, race_settings, pool_b) == (10, set())
    assert race.violations() == set()


def test_observe_mode_grabs_and_records_what_enforcing_would_refuse(
    race: Race, race_settings: Settings
) -> None:
    campaign_id = race.campaign(RULES, budget_fen=100_000)
    pool_id = open_pool(race, campaign_id, total_fen=1000, count=10)
    first, second = crowd(race, 2)  # a new merchant's policy: observe

    assert grab(race, first, pool_id).status == 201
    assert grab(race, second, pool_id).status == 201

    assert len(grants(race, pool_id)) == 2
    assert _redis_state(race, race_settings, pool_id) == (8, {first.consumer_id, second.consumer_id})
    assert _decisions(race, pool_id) == [
        (first.consumer_id, Outcome.ALLOW, []),
        (second.consumer_id, Outcome.LIMIT, ["ip_min_interval"]),
    ]
    assert race.violations() == set()
