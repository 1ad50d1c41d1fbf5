"""Pool races (issue 12, "done when" 1): 200 grabbers at once on a 100-share pool → exactly 100 grants
summing to the total, each ≥ 1 fen, nobody twice, the ledger clean; the same with Redis SIGKILLed and
restarted mid-pool, and with the web process killed between the Redis step and the commit; a close racing
grabs gives back exactly what no grant took. Every grab is a real request with its own connection and
commit, on PostgreSQL, SQLite (WAL) and PostgreSQL behind PgBouncer."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import redis as redis_lib
from sqlalchemy import func, select

from app.audit.service import CLI
from app.extensions import db
from app.ledger.models import AccountKind
from app.pools import hot, service
from app.pools.models import PoolStatus
from app.pools.reconcile import reconcile_pool
from app.pools.service import FAULT_CONFIG_KEY
from app.settings import Settings
from tests.pools.helpers import RULES, assert_exact, crowd, grab, grants, open_pool, pool_row
from tests.races.conftest import Answer, Race

pytestmark = pytest.mark.race

SHARES = 100
GRABBERS = 200
TOTAL_FEN = 10_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server of this test's own (no persistence, like a crashed cache), killed and restarted."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(  # noqa: S603 - fixed arguments
            ["redis-server", *args, "--dir", str(self.workdir)],  # noqa: S607
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis_lib.Redis(port=self.port, socket_timeout=1)
        for _ in range(200):
            try:
                if client.ping():
                    break
            except redis_lib.RedisError:
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(_free_port(), tmp_path)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill()


@pytest.fixture
def redis_url(own_redis: RedisServer) -> str:
    """The races of this module run on a Redis of their own, which they may kill."""
    return own_redis.url


def test_200_grabbers_on_100_shares_get_exactly_100_grants(race: Race) -> None:
    campaign_id = race.campaign(RULES, budget_fen=50_000)
    pool_id = open_pool(race, campaign_id, total_fen=TOTAL_FEN, count=SHARES)
    buyers = crowd(race, GRABBERS)
    answers = race.race([partial(grab, race, buyer, pool_id) for buyer in buyers])
    assert sum(a.status == 201 for a in answers) == SHARES, [str(a) for a in answers if a.status != 201][:5]
    assert {a.code for a in answers if a.status != 201} == {"pool_empty"}, [
        str(a) for a in answers if a.code not in (None, "pool_empty")
    ]
    assert_exact(race, pool_id, answers, total_fen=TOTAL_FEN, count=SHARES)
    # Fully grabbed: best luck is decided already, and shown to its owner only.
    best = max(grants(race, pool_id), key=lambda g: (g.amount.fen, -g.id))
    lucky = next(b for b in buyers if b.consumer_id == best.consumer_id)
    seen = race.get(f"/api/mp/v1/pools/{pool_id}", headers=race.mp_headers(lucky))
    assert seen.body["best_luck"] is True and seen.body["my_grant"]["amount_fen"] == best.amount.fen
    other = next(b for b in buyers if b.consumer_id != best.consumer_id)
    assert race.get(f"/api/mp/v1/pools/{pool_id}", headers=race.mp_headers(other)).body["best_luck"] is False
    # A second grab by a winner is refused and changes nothing.
    again = grab(race, buyers[0], pool_id) if answers[0].status == 201 else grab(race, buyers[1], pool_id)
    assert again.status == 409 and again.code in {"already_grabbed", "pool_empty"}
    assert len(grants(race, pool_id)) == SHARES
    # Fully grabbed: closing gives nothing back (no legs reserved) and marks best luck.
    budget_before = race.balance(AccountKind.CAMPAIGN_BUDGET, campaign_id)
    assert race.call(service.close_pool, merchant_id=race.merchant_id, pool_id=pool_id, actor=CLI).ok
    pool = pool_row(race, pool_id)
    assert pool.status is PoolStatus.CLOSED and pool.released.fen == 0
    assert pool.best_grant_id == best.id
    assert race.balance(AccountKind.CAMPAIGN_BUDGET, campaign_id) == budget_before
    assert race.violations() == set()


def test_redis_killed_and_restarted_mid_pool(
    race: Race, own_redis: RedisServer, race_settings: Settings
) -> None:
    campaign_id = race.campaign(RULES, budget_fen=50_000)
    pool_id = open_pool(race, campaign_id, total_fen=TOTAL_FEN, count=SHARES)
    buyers = crowd(race, GRABBERS)
    started = threading.Event()
    retried: list[str] = []
    before_kill: list[int] = []
    with race.context():
        keys = hot.PoolKeys(hot.Ref(race.merchant_id, pool_id))

    def killer() -> Answer:
        started.wait(timeout=30)
        # Watched in Redis itself (the database's connections are all busy grabbing).
        watch = redis_lib.Redis.from_url(own_redis.url)
        while not watch.exists(keys.state) or watch.llen(keys.left) > SHARES - SHARES // 5:
            time.sleep(0.001)
        before_kill.append(SHARES - int(watch.llen(keys.left)))
        watch.close()
        own_redis.kill()
        time.sleep(0.3)  # grabs meanwhile answer 503 redis_unavailable, nothing taken
        own_redis.start()  # empty: the pool is rebuilt from PostgreSQL on the next grab
        return Answer(200)

    def first(i: int, buyer: object) -> Answer:
        # Arrivals spread over ~1 s (a crowd, not one instant), so the kill lands mid-pool.
        started.set()
        time.sleep(i * 0.005)
        return grab(race, buyer, pool_id, retried=retried)  # type: ignore[arg-type]

    answers = race.race([killer, *(partial(first, i, buyer) for i, buyer in enumerate(buyers))])[1:]
    # Killed mid-pool: some shares were granted before, grabs during the outage were refused (retried).
    assert 0 < before_kill[0] < SHARES, before_kill
    assert "redis_unavailable" in retried
    assert sum(a.status == 201 for a in answers) == SHARES, [str(a) for a in answers if a.status != 201][:5]
    assert_exact(race, pool_id, answers, total_fen=TOTAL_FEN, count=SHARES)


def test_web_killed_between_the_redis_step_and_the_commit(
    race: Race, race_settings: Settings, tmp_path: Path
) -> None:
    campaign_id = race.campaign(RULES, budget_fen=50_000)
    pool_id = open_pool(race, campaign_id, total_fen=TOTAL_FEN, count=SHARES)
    victims = crowd(race, 3)
    for victim in victims:
        _grab_on_a_dying_server(race, race_settings, tmp_path, pool_id, victim.token)
    # Their shares are in flight in Redis, never committed: nobody else can take them yet.
    assert grants(race, pool_id) == []
    buyers = crowd(race, GRABBERS)
    answers = race.race([partial(grab, race, buyer, pool_id) for buyer in buyers])
    assert sum(a.status == 201 for a in answers) == SHARES - len(victims)
    with race.context():
        report = reconcile_pool(pool_id, grace_ms=0)
        db.session.commit()
    assert report.given_back == len(victims) and report.problems == []
    # The victims were never told anything; they grab again and get the shares back.
    retries = [grab(race, victim, pool_id) for victim in victims]
    assert all(a.status == 201 for a in retries), [str(a) for a in retries]
    assert_exact(race, pool_id, answers + retries, total_fen=TOTAL_FEN, count=SHARES)


_SERVER = """
import sys
from werkzeug.serving import run_simple
from app import create_app
app = create_app()
app.config[sys.argv[2]] = "exit-after-redis"
run_simple("127.0.0.1", int(sys.argv[1]), app, threaded=True)
"""


def _grab_on_a_dying_server(race: Race, settings: Settings, tmp_path: Path, pool_id: int, token: str) -> None:
    """A real web server process (the app over HTTP) that dies (os._exit) right after the Redis step."""
    config = tmp_path / "child.toml"
    config.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HONGLI_")} | {
        "HONGLI_CONFIG": str(config),
        "HONGLI_ENV": "test",
        "HONGLI_DATABASE__URL": settings.database.url,
        "HONGLI_DATABASE__PREPARED_STATEMENTS": str(settings.database.prepared_statements).lower(),
        "HONGLI_REDIS__URL": settings.redis.url,
        "HONGLI_QUEUE__PREFIX": settings.queue.prefix,
        "HONGLI_LOGGING__FORMAT": "text",
    }
    port = _free_port()
    server = subprocess.Popen(  # noqa: S603 - fixed arguments
        [sys.executable, "-c", _SERVER, str(port), FAULT_CONFIG_KEY],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {
            "Authorization": f"Bearer {token}",
            "X-WX-AppId": race.mp_appid,
            "Content-Type": "application/json",
        }
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            connection.request(
                "POST", f"/api/mp/v1/pools/{pool_id}/grab", body=json.dumps({}), headers=headers
            )
            connection.getresponse()
        assert server.wait(timeout=30) == 137
    finally:
        if server.poll() is None:
            server.kill()


def test_close_racing_grabs_gives_back_exactly_what_no_grant_took(race: Race) -> None:
    campaign_id = race.campaign(RULES, budget_fen=1_000_000)

    def round_(i: int) -> None:
        pool_id = open_pool(race, campaign_id, total_fen=500, count=5, buyer_rate_bp=500, max_order_fen=2000)
        buyers = crowd(race, 6)
        close = partial(
            race.call, service.close_pool, merchant_id=race.merchant_id, pool_id=pool_id, actor=CLI
        )
        answers = race.race([close, *(partial(grab, race, buyer, pool_id) for buyer in buyers)])
        race.assert_clean(answers)
        assert answers[0].ok, str(answers[0])
        pool = pool_row(race, pool_id)
        granted = grants(race, pool_id)
        assert sum(a.status == 201 for a in answers[1:]) == len(granted) <= 5
        assert {a.code for a in answers[1:] if a.status != 201} <= {"pool_closed", "pool_empty"}
        assert pool.released == pool.reserved - sum((g.reserved for g in granted), type(pool.reserved)(0))

    race.rounds(round_, n=10)


def test_a_cash_share_paid_by_three_workers_at_once_is_paid_once(race: Race) -> None:
    from app.core.money import Money
    from app.pools.models import PoolPayout, SplitKind
    from app.withdrawals.models import Withdrawal
    from jobs.pools import pay_cash_share

    race.configure(withdrawal_min=Money(100), withdrawal_auto_approve_max=Money(100_000))
    campaign_id = race.campaign(RULES, budget_fen=100_000)
    pool_id = open_pool(
        race, campaign_id, total_fen=20_000, count=20, split=SplitKind.FIXED, payout=PoolPayout.CASH
    )

    def round_(_: int) -> None:
        buyer = race.buyer()
        won = grab(race, buyer, pool_id)
        assert won.status == 201, str(won)
        # RQ delivers at least once, and the sweep may pick the same grant: three at once.
        answers = race.race([partial(race.call, pay_cash_share, won.body["grant_id"])] * 3)
        race.assert_clean(answers)
        assert sum(a.ok and a.value is True for a in answers) == 1, [str(a) for a in answers]
        assert race.wallet(buyer.consumer_id) == {
            "available": 0,
            "pending": 0,
            "withdrawing": 1000,
            "debt": 0,
        }
        with race.context():
            keys = db.session.scalars(
                select(Withdrawal.idempotency_key).where(Withdrawal.consumer_id == buyer.consumer_id)
            ).all()
        assert keys == [f"pool-cash:{won.body['grant_id']}"]

    race.rounds(round_, n=10)


def test_two_opens_at_once_reserve_once(race: Race) -> None:
    from datetime import timedelta

    from app.core.db import utcnow
    from app.core.money import Money
    from app.pools.models import Audience, SplitKind

    campaign_id = race.campaign(RULES, budget_fen=1_000_000)

    def round_(_: int) -> None:
        with race.context():
            now = utcnow()
            pool = service.create_pool(
                merchant_id=race.merchant_id,
                campaign_id=campaign_id,
                name="opened twice",
                split=SplitKind.RANDOM,
                audience=Audience.ALL,
                total=Money(1000),
                count=10,
                starts_at=now - timedelta(minutes=1),
                ends_at=now + timedelta(hours=1),
                min_spend=Money(0),
                valid_days=7,
                actor=CLI,
            )
            db.session.commit()
            pool_id = pool.id
        budget = race.balance(AccountKind.CAMPAIGN_BUDGET, campaign_id)
        open_ = partial(
            race.call, service.open_pool, merchant_id=race.merchant_id, pool_id=pool_id, actor=CLI
        )
        answers = race.race([open_, open_, open_])
        race.assert_clean(answers)
        assert sum(a.ok for a in answers) == 1, [str(a) for a in answers]
        assert {a.code for a in answers if not a.ok} <= {"pool_closed", "database_busy"}
        assert race.balance(AccountKind.CAMPAIGN_BUDGET, campaign_id) == budget - 1000
        with race.context():
            from app.pools.models import PoolShare

            assert db.session.scalar(select(func.count()).where(PoolShare.pool_id == pool_id)) == 10

    race.rounds(round_, n=10)


def test_fission_tiers_paid_by_three_workers_at_once_are_paid_once(race: Race) -> None:
    from app.pools.models import PoolTierReward
    from jobs.pools import reward_tiers

    campaign_id = race.campaign(RULES, budget_fen=1_000_000)
    ladder = [{"friends": 1, "reward_fen": 100}, {"friends": 2, "reward_fen": 300}]

    def round_(_: int) -> None:
        pool_id = open_pool(race, campaign_id, total_fen=1000, count=10, ladder=ladder)
        sharer, *friends = crowd(race, 3)
        token = grab(race, sharer, pool_id).body["share_token"]
        for friend in friends:
            assert grab(race, friend, pool_id, token=token).status == 201
        answers = race.race([partial(race.call, reward_tiers, pool_id, sharer.consumer_id)] * 3)
        race.assert_clean(answers)
        assert sum(a.value for a in answers if a.ok) == 2, [str(a) for a in answers]
        with race.context():
            tiers = db.session.scalars(
                select(PoolTierReward.amount).where(
                    PoolTierReward.pool_id == pool_id, PoolTierReward.red_packet_id.is_not(None)
                )
            ).all()
        assert sorted(t.fen for t in tiers) == [100, 300]

    race.rounds(round_, n=10)


def test_a_fission_packets_unopened_part_collected_by_three_workers_at_once_is_booked_once(
    race: Race,
) -> None:
    """The hourly sweep on several workers (or a slow one overlapping the next) asks about the same packet:
    its unopened part goes back to the budget once — ``UPDATE pool_grants … WHERE unopened IS NULL``
    decides, the entry is keyed by the grant."""
    from datetime import timedelta

    from app.core.db import utcnow
    from app.ledger.models import EntryReason, JournalEntry
    from app.payouts.service import make_due
    from app.pools.cash import collect_unopened
    from jobs.payouts import process_payout
    from jobs.pools import pay_cash_share
    from tests.pools.fission_helpers import can_send_red_packets, fission_pool, follower, grabbed, payouts_of

    can_send_red_packets(race)
    pool_id = fission_pool(race, share_fen=3000, count=10, fission_count=3)

    def passed(payout_id: int) -> str:
        assert race.call(make_due, payout_id).ok
        answer = race.call(process_payout, payout_id)
        assert answer.ok, str(answer)
        return str(answer.value)

    def round_(_: int) -> None:
        buyer, _openid = follower(race)
        grant_id = grabbed(race, buyer, pool_id)
        assert race.call(pay_cash_share, grant_id).value is True
        (payout,) = payouts_of(race, buyer.consumer_id)
        assert passed(payout.id) == "accepted"
        race.sandbox.post(f"/redpacks/{payout.bill_no}/open", {"mchid": race.mchid})
        race.sandbox.post(f"/redpacks/{payout.bill_no}/friends-open", {"mchid": race.mchid, "count": 1})
        assert passed(payout.id) == "succeeded"
        race.sandbox.post("/clock/advance", {"seconds": 25 * 3600})  # WeChat's day is over
        later = utcnow() + timedelta(hours=25)
        answers = race.race([partial(race.call, collect_unopened, grant_id, later)] * 3)
        race.assert_clean(answers)
        assert sorted(str(a.value) for a in answers if a.ok).count("booked") == 1, [str(a) for a in answers]
        with race.context():
            booked = db.session.scalars(
                select(JournalEntry.idempotency_key).where(
                    JournalEntry.reason == EntryReason.FISSION_UNOPENED,
                    JournalEntry.cause_id == str(grant_id),
                )
            ).all()
        assert booked == [f"pool-unopened:{grant_id}"]

    race.rounds(round_, n=6)
