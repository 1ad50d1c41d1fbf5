"""What a pool leaves in Redis around failures and layouts: a failure after the grant's statement
committed by itself gives nothing back that PostgreSQL holds; reconciliation and the close drop the keys
of the earlier layout (another hash tag: another Redis Cluster slot, so a call of their own)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app.audit.service import CLI
from app.extensions import db
from app.pools import hot, service
from app.pools.models import PoolGrant
from app.pools.reconcile import reconcile_pool
from app.queue.queues import get_redis
from tests.pools.helpers import RULES, crowd, grab, open_pool
from tests.races.conftest import Race


@pytest.fixture
def commit_fails_once() -> Iterator[list[str]]:
    """Once armed (``append("armed")``), the next session commit raises: in a grab, after its statement
    already committed by itself."""
    state: list[str] = []

    def fail(_session: Any) -> None:
        if state == ["armed"]:
            state.append("failed")
            raise RuntimeError("injected: the process failed after the statement")

    event.listen(Session, "before_commit", fail)
    yield state
    event.remove(Session, "before_commit", fail)


def test_a_failure_after_the_committed_grant_gives_back_nothing_postgresql_holds(
    race: Race, commit_fails_once: list[str]
) -> None:
    campaign_id = race.campaign(RULES, budget_fen=100_000)
    pool_id = open_pool(race, campaign_id, total_fen=1000, count=10)
    (buyer,) = crowd(race, 1)
    commit_fails_once.append("armed")
    answer = grab(race, buyer, pool_id)
    assert commit_fails_once == ["armed", "failed"] and answer.status == 500, str(answer)
    with race.context():
        seq = db.session.scalar(
            select(PoolGrant.seq).where(
                PoolGrant.pool_id == pool_id, PoolGrant.consumer_id == buyer.consumer_id
            )
        )
        assert seq is not None  # the statement committed by itself
        snap = hot.snapshot(hot.Ref(race.merchant_id, pool_id))
        # Redis still holds the share as taken by this grabber: nothing was given back.
        assert seq not in {share.seq for share in snap.left} and len(snap.left) == 9
        assert buyer.consumer_id in snap.who
        report = reconcile_pool(pool_id, grace_ms=0)
        db.session.commit()
        assert report.problems == [] and report.given_back == 0
    again = grab(race, buyer, pool_id)
    assert again.status == 409 and again.code == "already_grabbed", str(again)
    assert race.violations() == set()


def test_reconciliation_and_the_close_drop_the_earlier_layouts_keys(race: Race) -> None:
    campaign_id = race.campaign(RULES, budget_fen=100_000)
    pool_id = open_pool(race, campaign_id, total_fen=1000, count=10)
    with race.context():
        keys = hot.PoolKeys(hot.Ref(race.merchant_id, pool_id))
        legacy, client = keys.legacy(), get_redis()
        for key in legacy:
            client.set(key, "stale")
        reconcile_pool(pool_id, grace_ms=0)
        db.session.commit()
        assert client.exists(*legacy) == 0 and client.exists(keys.state) == 1
        client.set(legacy[0], "stale")
        service.close_pool(merchant_id=race.merchant_id, pool_id=pool_id, actor=CLI)
        db.session.commit()
        assert client.exists(*keys.all(), *legacy) == 0
