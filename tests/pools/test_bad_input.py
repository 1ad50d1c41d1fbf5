"""Bad input to pools: each refused with its error code, and nothing changed (no grant, no share taken in
Redis, no ledger entry)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import redis as redis_lib
from sqlalchemy import func, select

from app.audit.service import CLI
from app.campaigns.models import CampaignStatus
from app.campaigns.service import create_campaign, deposit_budget, fund_campaign, transition
from app.console.service import ban_consumer
from app.core.db import utcnow
from app.core.money import Money
from app.extensions import db
from app.followers.models import Follower, FollowStatus
from app.ledger.models import JournalEntry
from app.pools import hot, service
from app.pools.models import Audience, PoolStatus, SplitKind
from app.settings import Settings
from tests.pools.helpers import RULES, crowd, grab, grants, open_pool, pool_row
from tests.pools.test_pools_api import _pool_body, operator
from tests.races.conftest import Race


class Unchanged:
    """What a refusal must leave as it was: grants, shares left in Redis, ledger entries."""

    def __init__(self, race: Race, settings: Settings, pool_id: int, merchant_id: int | None = None) -> None:
        self.race, self.pool_id = race, pool_id
        self.redis = redis_lib.Redis.from_url(settings.redis.url)
        merchant_id = merchant_id or race.merchant_id
        with race.context():
            self.left_key = hot.PoolKeys(hot.Ref(merchant_id, pool_id)).left
        self.before = self.state()

    def state(self) -> tuple[Any, ...]:
        with self.race.context():
            entries = db.session.scalar(select(func.count()).select_from(JournalEntry))
        return (len(grants(self.race, self.pool_id)), self.redis.llen(self.left_key), entries)

    def check(self) -> None:
        assert self.state() == self.before
        assert self.race.violations() == set()


@pytest.fixture
def pool_id(race: Race) -> int:
    campaign_id = race.campaign(RULES, budget_fen=100_000)
    pool = open_pool(race, campaign_id, total_fen=1000, count=10)
    grab(race, crowd(race, 1)[0], pool)  # Redis holds the pool from now on
    return pool


def test_grab_twice_is_refused(race: Race, race_settings: Settings, pool_id: int) -> None:
    buyer = crowd(race, 1)[0]
    first = grab(race, buyer, pool_id)
    assert first.status == 201
    unchanged = Unchanged(race, race_settings, pool_id)
    again = grab(race, buyer, pool_id)
    assert again.status == 409 and again.code == "already_grabbed"
    assert again.details["amount_fen"] == first.body["amount_fen"]
    unchanged.check()


def test_grab_after_close_is_refused(race: Race, race_settings: Settings, pool_id: int) -> None:
    assert race.call(service.close_pool, merchant_id=race.merchant_id, pool_id=pool_id, actor=CLI).ok
    unchanged = Unchanged(race, race_settings, pool_id)
    late = grab(race, crowd(race, 1)[0], pool_id)
    assert late.status == 409 and late.code == "pool_closed"
    again = race.call(service.close_pool, merchant_id=race.merchant_id, pool_id=pool_id, actor=CLI)
    assert again.status == 409 and again.code == "pool_closed"
    unchanged.check()


def test_another_merchants_pool_is_not_found(race: Race, race_settings: Settings, pool_id: int) -> None:
    with race.context():
        other = race.sandbox.onboard("other-tea")
        deposit_budget(key="other-bank", amount=Money(50_000), merchant_id=other.id)
        now = utcnow()
        campaign = create_campaign(
            merchant_id=other.id,
            name="other",
            starts_at=now - timedelta(minutes=1),
            ends_at=now + timedelta(days=3),
            rules=RULES,
            actor=CLI,
        )
        transition(merchant_id=other.id, campaign_id=campaign.id, to=CampaignStatus.ACTIVE, actor=CLI)
        fund_campaign(
            merchant_id=other.id,
            campaign_id=campaign.id,
            amount=Money(50_000),
            source="merchant",
            key="other-fund",
            actor=CLI,
        )
        theirs = service.create_pool(
            merchant_id=other.id,
            campaign_id=campaign.id,
            name="theirs",
            split=SplitKind.FIXED,
            audience=Audience.ALL,
            total=Money(1000),
            count=10,
            starts_at=now - timedelta(minutes=1),
            ends_at=now + timedelta(hours=1),
            min_spend=Money(0),
            valid_days=7,
            actor=CLI,
        )
        service.open_pool(merchant_id=other.id, pool_id=theirs.id, actor=CLI)
        db.session.commit()
        their_pool, their_id = theirs.id, other.id
    # Someone of theirs grabs first, so Redis holds their pool.
    with race.context():
        from app.consumers.sessions import issue_session
        from tests.factories import make_consumer

        their_buyer = make_consumer(other)
        their_token, _ = issue_session(their_buyer)
        their_appid = other.mp_appid
        db.session.commit()
    theirs_grab = race.post(
        f"/api/mp/v1/pools/{their_pool}/grab",
        json={},
        headers={"Authorization": f"Bearer {their_token}", "X-WX-AppId": str(their_appid)},
    )
    assert theirs_grab.status == 201, str(theirs_grab)
    unchanged = Unchanged(race, race_settings, their_pool, their_id)
    assert unchanged.before[1] == 9
    buyer = crowd(race, 1)[0]
    answer = grab(race, buyer, their_pool)
    assert answer.status == 404 and answer.code == "pool_not_found"
    for path in (f"/api/mp/v1/pools/{their_pool}", f"/api/mp/v1/pools/{their_pool}/left"):
        seen = race.get(path, headers=race.mp_headers(buyer))
        assert seen.status == 404 and seen.code == "pool_not_found", (path, str(seen))
    console = operator(race)
    for path in (f"/api/console/v1/pools/{their_pool}", f"/api/console/v1/pools/{their_pool}/stats"):
        seen = console.get(path)
        assert seen.status_code == 404 and seen.json["error"]["code"] == "pool_not_found"
    closing = console.post(f"/api/console/v1/pools/{their_pool}/close")
    assert closing.status_code == 404 and closing.json["error"]["code"] == "pool_not_found"
    assert pool_row(race, their_pool).status is PoolStatus.OPEN
    unchanged.check()


def test_a_banned_consumer_is_refused(race: Race, race_settings: Settings, pool_id: int) -> None:
    buyer = crowd(race, 1)[0]
    unchanged = Unchanged(race, race_settings, pool_id)
    with race.context():
        ban_consumer(
            merchant_id=race.merchant_id, consumer_id=buyer.consumer_id, reason="fake orders", actor=CLI
        )
        db.session.commit()
    # Their sessions end with the ban; a grab already past authentication is refused by the service.
    answer = grab(race, buyer, pool_id)
    assert answer.status == 401 and answer.code == "unauthenticated"
    direct = race.call(
        service.grab, merchant_id=race.merchant_id, consumer_id=buyer.consumer_id, pool_id=pool_id
    )
    assert direct.status == 403 and direct.code == "consumer_banned"
    unchanged.check()


def test_an_unauthenticated_caller_is_refused(race: Race, race_settings: Settings, pool_id: int) -> None:
    unchanged = Unchanged(race, race_settings, pool_id)
    anonymous = race.post(f"/api/mp/v1/pools/{pool_id}/grab", json={})
    assert anonymous.status == 401 and anonymous.code == "unauthenticated"
    forged = race.post(
        f"/api/mp/v1/pools/{pool_id}/grab",
        json={},
        headers={"Authorization": "Bearer nope", "X-WX-AppId": race.mp_appid},
    )
    assert forged.status == 401 and forged.code == "unauthenticated"
    unchanged.check()


def test_a_followers_pool_refuses_who_does_not_follow(race: Race, race_settings: Settings) -> None:
    campaign_id = race.campaign(RULES, budget_fen=100_000)
    pool_id = open_pool(race, campaign_id, total_fen=1000, count=10, audience=Audience.FOLLOWERS)
    stranger, follower = crowd(race, 2)
    with race.context():
        now = utcnow()
        db.session.add(
            Follower(
                merchant_id=race.merchant_id,
                consumer_id=follower.consumer_id,
                openid=f"oa-{follower.consumer_id}",
                status=FollowStatus.FOLLOWING,
                first_followed_at=now,
                followed_at=now,
            )
        )
        db.session.commit()
    assert grab(race, follower, pool_id).status == 201
    unchanged = Unchanged(race, race_settings, pool_id)
    refused = grab(race, stranger, pool_id)
    assert refused.status == 403 and refused.code == "not_eligible"
    assert refused.details == {"audience": "followers"}
    unchanged.check()


def test_a_new_users_pool_refuses_a_customer_who_has_paid(race: Race, race_settings: Settings) -> None:
    campaign_id = race.campaign(RULES, budget_fen=100_000)
    pool_id = open_pool(race, campaign_id, total_fen=1000, count=10, audience=Audience.NEW_USERS)
    customer = race.buyer()
    order_id, _ = race.register(customer, 3000)
    assert race.pay(customer, order_id).status == 200
    assert race.user_pays(race.out_trade_nos(order_id)[0]).ok
    assert grab(race, crowd(race, 1)[0], pool_id).status == 201
    unchanged = Unchanged(race, race_settings, pool_id)
    refused = grab(race, customer, pool_id)
    assert refused.status == 403 and refused.code == "not_eligible"
    unchanged.check()


def test_bad_pool_definitions_and_roles_are_refused(race: Race) -> None:
    campaign_id = race.campaign(RULES, budget_fen=1000)
    console = operator(race)
    for body, field in (
        (_pool_body(campaign_id, count=0), "count"),
        (_pool_body(campaign_id, total_fen=5, count=10), "total_fen"),
        (_pool_body(campaign_id) | {"campaign_id": campaign_id + 99}, "campaign_id"),
        (
            _pool_body(
                campaign_id, ladder=[{"friends": 3, "reward_fen": 100}, {"friends": 2, "reward_fen": 300}]
            ),
            "ladder",
        ),
        (_pool_body(campaign_id, ends_at=(utcnow() - timedelta(hours=1)).isoformat()), "ends_at"),
    ):
        answer = console.post("/api/console/v1/pools", json=body)
        assert answer.status_code == 422, (field, answer.json)
        assert answer.json["error"]["code"] == "validation_error"
        assert field in str(answer.json["error"]["details"]), (field, answer.json)
    # Finance may read pools, not make them.
    finance = race.console_post("/api/console/v1/pools", json=_pool_body(campaign_id))
    assert finance.status == 403 and finance.code == "forbidden"
    with race.context():
        assert service.list_pools(merchant_id=race.merchant_id) == []


def test_a_pool_the_budget_cannot_cover_does_not_open(race: Race) -> None:
    campaign_id = race.campaign(RULES, budget_fen=1000)
    console = operator(race)
    pool_id = console.post("/api/console/v1/pools", json=_pool_body(campaign_id)).json["id"]
    refused = console.post(f"/api/console/v1/pools/{pool_id}/open")
    assert refused.status_code == 409 and refused.json["error"]["code"] == "insufficient_funds"
    pool = pool_row(race, pool_id)
    assert pool.status is PoolStatus.DRAFT and pool.reserved.fen == 0
    answer = grab(race, crowd(race, 1)[0], pool_id)
    assert answer.status == 409 and answer.code == "pool_closed"
    assert race.violations() == set()
