"""Pool set-up and verdicts shared by the pool tests and the pool races (real commits, harness of
tests/races)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from app.audit.service import CLI
from app.consumers.sessions import issue_session
from app.core.db import utcnow
from app.core.money import Money
from app.extensions import db
from app.merchants.models import Merchant
from app.pools import service
from app.pools.models import Audience, Pool, PoolGrant, SplitKind
from app.pools.reconcile import reconcile_pool
from tests.factories import make_consumer
from tests.races.conftest import Answer, Buyer, Race

RULES = {
    "rules": [
        {
            "id": "fixed",
            "kind": "fixed",
            "priority": 1,
            "stacking": "combinable",
            "amount_fen": 100,
            "min_order_fen": 100_000_000,
        }
    ]
}
RETRYABLE = {"database_busy", "pool_busy", "redis_unavailable"}


def open_pool(
    race: Race,
    campaign_id: int,
    *,
    total_fen: int,
    count: int,
    split: SplitKind = SplitKind.RANDOM,
    audience: Audience = Audience.ALL,
    ladder: list[dict[str, int]] | None = None,
    **terms: Any,
) -> int:
    """A pool of the campaign, opened (its whole worst case reserved), committed."""
    with race.context():
        now = utcnow()
        pool = service.create_pool(
            merchant_id=race.merchant_id,
            campaign_id=campaign_id,
            name="grab me",
            split=split,
            audience=audience,
            total=Money(total_fen),
            count=count,
            starts_at=now - timedelta(minutes=1),
            ends_at=now + timedelta(hours=1),
            min_spend=Money(terms.pop("min_spend_fen", 0)),
            valid_days=7,
            max_order=Money(terms.pop("max_order_fen", 0)),
            ladder=ladder,
            actor=CLI,
            **terms,
        )
        service.open_pool(merchant_id=race.merchant_id, pool_id=pool.id, actor=CLI)
        db.session.commit()
        return pool.id


def crowd(race: Race, n: int) -> list[Buyer]:
    """``n`` consumers of the merchant, each signed in to the mini-program (a session token of their own;
    created directly, not through ``/login``, whose per-IP limit a crowd on one machine would hit)."""
    buyers = []
    with race.context():
        merchant = db.session.get(Merchant, race.merchant_id)
        assert merchant is not None
        for _ in range(n):
            consumer = make_consumer(merchant)
            token, _session = issue_session(consumer)
            buyers.append(Buyer(consumer.id, token, f"o-crowd-{consumer.id}", f"crowd{consumer.id}"))
        db.session.commit()
    return buyers


def grab(
    race: Race, buyer: Buyer, pool_id: int, token: str | None = None, retried: list[str] | None = None
) -> Answer:
    """Grab until the answer is final (a busy database, a Redis outage or a collided share is retried,
    as the mini-program does); the codes retried are appended to ``retried``."""
    body = {"share_token": token} if token else {}
    answer = race.post(f"/api/mp/v1/pools/{pool_id}/grab", json=body, headers=race.mp_headers(buyer))
    for _ in range(200):
        if not (answer.status in (409, 503) and answer.code in RETRYABLE):
            return answer
        if retried is not None:
            retried.append(str(answer.code))
        time.sleep(0.05)
        answer = race.post(f"/api/mp/v1/pools/{pool_id}/grab", json=body, headers=race.mp_headers(buyer))
    return answer


def grants(race: Race, pool_id: int) -> list[PoolGrant]:
    with race.context():
        rows = list(db.session.scalars(select(PoolGrant).where(PoolGrant.pool_id == pool_id)))
        db.session.expunge_all()
        return rows


def pool_row(race: Race, pool_id: int) -> Pool:
    with race.context():
        pool = db.session.get(Pool, pool_id)
        assert pool is not None
        db.session.expunge(pool)
        return pool


def assert_exact(race: Race, pool_id: int, answers: list[Answer], *, total_fen: int, count: int) -> None:
    """Exactly ``count`` grants summing to the total, each ≥ 1 fen, nobody twice; every grab answered
    with its own grant; Redis and PostgreSQL agree; the ledger checks are clean."""
    race.assert_clean(answers)
    granted = grants(race, pool_id)
    assert len(granted) == count, f"{len(granted)} grants for {count} shares"
    assert sum(g.amount.fen for g in granted) == total_fen
    assert min(g.amount.fen for g in granted) >= 1
    assert len({g.consumer_id for g in granted}) == count
    assert sorted(g.seq for g in granted) == list(range(1, count + 1))
    won = [a for a in answers if a.status == 201]
    by_packet = {g.red_packet_id: g.amount.fen for g in granted}
    for answer in won:
        assert by_packet[answer.body["red_packet_id"]] == answer.body["amount_fen"]
    assert len(won) == len({a.body["red_packet_id"] for a in won})
    with race.context():
        report = reconcile_pool(pool_id, grace_ms=0)
        db.session.commit()
    assert report.problems == [], report.problems
    assert race.violations() == set()
