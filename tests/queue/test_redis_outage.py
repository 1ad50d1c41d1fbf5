"""Redis killed (SIGKILL) and restarted during a burst of payouts: the worker process stays up, resumes by
itself, and every withdrawal is paid exactly once; the web answers 503 + Retry-After meanwhile.

The Redis here keeps nothing across a restart (no AOF, no snapshot), the harshest case: every queued job is
gone. What was in flight is settled by its row (the payout's lease and status) and the rest is queued
again by the outbox sweep (``enqueue_due_payouts``, which the periodic scheduler runs every minute).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import requests
from sqlalchemy import select

from app.audit.service import CLI
from app.consumers.models import AppKind, WeChatIdentity
from app.extensions import db
from app.ledger.accounts import consumer_accounts
from app.merchants.demo import seed_demo_merchant
from app.merchants.models import PayoutRail
from app.payouts.models import PayoutStatus
from app.settings import load_settings
from app.withdrawals.models import Withdrawal
from tests.factories import make_consumer
from tests.payouts.conftest import fund_available
from tests.payouts.test_worker_crash import Crash, _free_port, _stop, _wait, sandbox_server

__all__ = ["sandbox_server"]  # a fixture used below
BURST = 8


@dataclass
class RedisServer:
    """A redis-server of this test's own, on a fixed port, that can be killed and started again."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.workdir / "redis.log").open("ab")
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--maxmemory-policy", "noeviction", "--dir", str(self.workdir)]
        self.proc = subprocess.Popen(  # noqa: S603 - fixed arguments
            ["redis-server", *args],  # noqa: S607
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        client = redis_lib.Redis(port=self.port, socket_timeout=1)
        try:
            _wait(lambda: _answers(client), "redis-server to answer", timeout=20)
        finally:
            client.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def _answers(client: redis_lib.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis_lib.RedisError:
        return False


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(_free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.kill()


@pytest.fixture
def outage(
    empty_database_url: str, own_redis: RedisServer, app_factory: Any, sandbox_server: str, tmp_path: Path
) -> Iterator[Crash]:
    """A committed database, a merchant paying by transfer bill in the sandbox server, a consumer with ¥300
    available — all on a Redis of the test's own."""
    from flask_migrate import upgrade

    config = tmp_path / "config.toml"
    config.write_text("")
    environ = {
        "HONGLI_CONFIG": str(config),
        "HONGLI_ENV": "test",
        "HONGLI_DATABASE__URL": empty_database_url,
        "HONGLI_REDIS__URL": own_redis.url,
        "HONGLI_QUEUE__PREFIX": "hongli-outage",
        "HONGLI_LOGGING__FORMAT": "text",
        "HONGLI_WECHAT__API_BASE_URL": sandbox_server,
        "HONGLI_WECHAT__PAY_BASE_URL": sandbox_server,
        "HONGLI_WECHAT__OPEN_BASE_URL": sandbox_server,
    }
    application = app_factory(load_settings(config_path=config, environ=environ))
    with application.app_context():
        upgrade()
        merchant = seed_demo_merchant(slug="outage-tea", name="Outage Tea", actor=CLI).merchant
        merchant.payout_rail = PayoutRail.TRANSFER_BILL
        consumer = make_consumer(merchant)
        user = requests.post(f"{sandbox_server}/_sandbox/users", json={"id": "carol"}, timeout=10).json()
        db.session.add(
            WeChatIdentity(
                merchant_id=merchant.id,
                consumer_id=consumer.id,
                app_kind=AppKind.MINIPROGRAM,
                appid=merchant.mp_appid or "",
                openid=user["openids"][merchant.mp_appid],
            )
        )
        fund_available(merchant.id, consumer.id, 300_00, f"outage-fund:{consumer.id}")
        db.session.commit()
        seeded = Crash(
            application,
            sandbox_server,
            {k: v for k, v in os.environ.items() if not k.startswith("HONGLI_")} | environ,
            tmp_path,
            merchant.id,
            merchant.mchid or "",
            consumer.id,
            [],
        )
    try:
        yield seeded
    finally:
        for proc in seeded.workers:
            _stop(proc)


def _statuses(outage: Crash, ids: list[int]) -> list[PayoutStatus]:
    return [outage.payout(i).status for i in ids]


@pytest.mark.slow
def test_redis_killed_during_a_payout_burst_the_worker_stays_up_and_pays_each_once(
    outage: Crash, own_redis: RedisServer
) -> None:
    # The first transfer call takes 3 s (WeChat accepts it, then answers): Redis dies while it is inside.
    outage.sandbox(
        "POST",
        "/faults",
        {
            "mchid": outage.mchid,
            "api": "v3.transfer_bill",
            "mode": "timeout",
            "delay_s": 3,
            "after_commit": True,
            "count": 1,
        },
    )
    payout_ids = [outage.withdraw(1500, f"outage-{n}") for n in range(BURST)]
    worker = outage.start_worker()

    def inside_the_call() -> bool:
        fired = [f for f in outage.sandbox("GET", "/faults")["faults"] if f["api"] == "v3.transfer_bill"]
        return bool(fired and fired[0]["fired"] == 1)

    _wait(inside_the_call, "a work horse to be inside the WeChat call")
    own_redis.kill()

    # While Redis is away the web answers a Redis-dependent call (a login, rate-limited in Redis) with 503.
    answer = outage.app.test_client().post(
        "/api/mp/v1/login", json={"appid": "wx0123456789abcdef", "code": "c"}
    )
    assert answer.status_code == 503, answer.get_data(as_text=True)
    assert answer.json["error"]["code"] == "redis_unavailable" and answer.headers["Retry-After"] == "5"
    # Readiness says which part failed; metrics still answer, saying Redis could not be read.
    ready = outage.app.test_client().get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["redis"]["ok"] is False
    assert ready.json["checks"]["database"]["ok"] is True
    metrics = outage.app.test_client().get("/metrics").get_data(as_text=True)
    assert (
        'hongli_up{dependency="redis"} 0.0' in metrics and 'hongli_up{dependency="database"} 1.0' in metrics
    )

    # The call in flight ends (WeChat created the bill, then the answer timed out: outcome unknown) and is
    # recorded — the rows need no Redis; the worker is still there, waiting for Redis.
    in_doubt = {PayoutStatus.UNKNOWN, PayoutStatus.ACCEPTED}
    _wait(lambda: outage.payout(payout_ids[0]).status in in_doubt, "the payout in flight to be recorded")
    log = outage.logs / "worker-0.log"
    _wait(lambda: "Redis is not answering" in log.read_text(errors="replace"), "the worker to wait for Redis")
    assert worker.poll() is None, outage.logs_text()

    own_redis.start()  # empty: every queued payout job is gone
    _wait(lambda: "the worker resumes" in log.read_text(errors="replace"), "the worker to resume")
    assert worker.poll() is None, outage.logs_text()
    # The outbox sweep queues again what Redis lost: the seven never sent, and the one in doubt once its
    # retry is due (made due here rather than waited for), which asks WeChat under the same bill number.
    assert outage.sweep(payout_ids[0], due=True, expire_lease=True) == BURST
    _wait(
        lambda: set(_statuses(outage, payout_ids)) == {PayoutStatus.ACCEPTED},
        "every payout to be accepted by WeChat",
    )
    for bill in outage.bills():
        outage.sandbox("POST", f"/transfer-bills/{bill['key']}/confirm")
    for payout_id in payout_ids:
        outage.sweep(payout_id, due=True)
    _wait(
        lambda: set(_statuses(outage, payout_ids)) == {PayoutStatus.SUCCEEDED},
        "every payout to succeed",
    )
    assert worker.poll() is None, outage.logs_text()

    bills = outage.bills()
    assert sorted((b["key"], b["amount_fen"], b["paid"]) for b in bills) == sorted(
        (outage.payout(i).bill_no, 1500, True) for i in payout_ids
    ), outage.logs_text()
    with outage.app.app_context():
        # Each withdrawal is carried by its own payout (its state is the payout's: succeeded, i.e. paid).
        carried = db.session.execute(select(Withdrawal.status, Withdrawal.payout_id)).all()
        balances = consumer_accounts(outage.merchant_id, outage.consumer_id)
        wallet = (balances.available.balance.fen, balances.withdrawing.balance.fen)
    assert sorted((status.value, payout) for status, payout in carried) == [
        ("approved", payout) for payout in sorted(payout_ids)
    ]
    assert wallet == (300_00 - BURST * 1500, 0)
    code, output = outage.cli("ledger", "check")
    assert code == 0 and "ledger clean" in output, output
    code, output = outage.cli("payouts", "check")
    assert code == 0, output
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, outage.logs_text()  # and it still stops when asked
