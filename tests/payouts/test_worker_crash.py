"""``kill -9`` of a real worker's process group in the middle of a payout, against a real sandbox server.

(a) killed while WeChat has not done anything (the call is stuck before WeChat acts); (b) killed after WeChat
accepted the transfer but before Hongli stored the answer. Either way the orphan's lease keeps every other
pass out until it runs out, RQ's abandoned-job cleanup fails the dead job, the outbox sweep queues the row
again, and the next pass resolves it by a query of the *same* bill number: WeChat holds exactly one bill,
paid once, and the ledger is clean.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from rq.registry import FailedJobRegistry, StartedJobRegistry
from sqlalchemy import update

from app.audit.service import CLI
from app.consumers.models import AppKind, WeChatIdentity
from app.core.db import utcnow
from app.core.money import Money
from app.extensions import db
from app.merchants.demo import seed_demo_merchant
from app.merchants.models import PayoutRail
from app.payouts.models import Payout, PayoutStatus
from app.payouts.service import enqueue_due_payouts
from app.queue import QueueName, get_queue
from app.settings import load_settings
from app.withdrawals.service import request_withdrawal
from tests.factories import make_consumer
from tests.payouts.conftest import fund_available

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal the whole process group (worker + work horse) and reap the leader."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


@pytest.fixture
def sandbox_server(tmp_path: Path) -> Iterator[str]:
    """``python -m wechat.sandbox`` on a free port, always stopped afterwards."""
    port = _free_port()
    log = (tmp_path / "sandbox.log").open("wb")
    proc = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "wechat.sandbox", "--port", str(port), "--seed", "5"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return requests.get(f"{base}/_sandbox/clock", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        _wait(up, "the sandbox server", timeout=30)
        yield base
    finally:
        _stop(proc, signal.SIGTERM)
        log.close()


@dataclass
class Crash:
    app: Flask
    base: str
    env: dict[str, str]
    logs: Path
    merchant_id: int
    mchid: str
    consumer_id: int
    workers: list[subprocess.Popen[bytes]]

    def sandbox(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = requests.request(method, f"{self.base}/_sandbox{path}", json=body, timeout=10)
        assert response.status_code < 300, (path, response.status_code, response.text)
        return response.json()

    def bills(self) -> list[dict[str, Any]]:
        return self.sandbox("GET", f"/payouts?mchid={self.mchid}")["payouts"]

    def start_worker(self) -> subprocess.Popen[bytes]:
        out = (self.logs / f"worker-{len(self.workers)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--queue", "payouts", "--no-periodic"],
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill -9 takes the work horse too
        )
        out.close()
        self.workers.append(proc)
        return proc

    def payout(self, payout_id: int) -> Payout:
        with self.app.app_context():
            payout = db.session.get(Payout, payout_id)
            assert payout is not None
            db.session.expunge(payout)
            return payout

    def withdraw(self, fen: int, key: str) -> int:
        with self.app.app_context():
            withdrawal, _ = request_withdrawal(
                merchant_id=self.merchant_id,
                consumer_id=self.consumer_id,
                amount=Money(fen),
                idempotency_key=key,
            )
            db.session.commit()  # the payout job is queued now, after commit
            assert withdrawal.payout_id is not None
            return withdrawal.payout_id

    def sweep(self, payout_id: int, *, due: bool = False, expire_lease: bool = False) -> int:
        with self.app.app_context():
            values: dict[str, Any] = {}
            if due:
                values["next_attempt_at"] = utcnow()
            if expire_lease:
                values["claimed_until"] = utcnow() - timedelta(seconds=1)
            if values:
                db.session.execute(update(Payout).where(Payout.id == payout_id).values(**values))
            count = enqueue_due_payouts()
            db.session.commit()
            return count

    def cli(self, *args: str) -> tuple[int, str]:
        # Pushed here: with the suite's app context current, the command would run against the suite's DB.
        with self.app.app_context():
            result = self.app.test_cli_runner().invoke(args=list(args))
        return result.exit_code, result.output

    def logs_text(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.logs.glob("*.log")))


@pytest.fixture
def crash(
    empty_database_url: str,
    redis_url: str,
    app_factory: Any,
    sandbox_server: str,
    tmp_path: Path,
    redis: Any,
) -> Iterator[Crash]:
    """A fresh committed database, a merchant paying by transfer bill in the sandbox server, a consumer
    with ¥300 available; worker processes started by the test are always killed afterwards."""
    from flask_migrate import upgrade

    config = tmp_path / "config.toml"
    config.write_text("")
    environ = {
        "HONGLI_CONFIG": str(config),
        "HONGLI_ENV": "test",
        "HONGLI_DATABASE__URL": empty_database_url,
        "HONGLI_REDIS__URL": redis_url,
        "HONGLI_QUEUE__PREFIX": "hongli-test",
        "HONGLI_LOGGING__FORMAT": "text",
        "HONGLI_WECHAT__API_BASE_URL": sandbox_server,
        "HONGLI_WECHAT__PAY_BASE_URL": sandbox_server,
        "HONGLI_WECHAT__OPEN_BASE_URL": sandbox_server,
        # The client waits longer than the test takes to kill the horse inside the call.
        "HONGLI_WECHAT__TIMEOUT_SECONDS": "45",
    }
    application = app_factory(load_settings(config_path=config, environ=environ))
    with application.app_context():
        upgrade()
        merchant = seed_demo_merchant(slug="crash-tea", name="Crash Tea", actor=CLI).merchant
        merchant.payout_rail = PayoutRail.TRANSFER_BILL
        consumer = make_consumer(merchant)
        user = requests.post(f"{sandbox_server}/_sandbox/users", json={"id": "bob"}, timeout=10).json()
        db.session.add(
            WeChatIdentity(
                merchant_id=merchant.id,
                consumer_id=consumer.id,
                app_kind=AppKind.MINIPROGRAM,
                appid=merchant.mp_appid or "",
                openid=user["openids"][merchant.mp_appid],
            )
        )
        fund_available(merchant.id, consumer.id, 300_00, f"crash-fund:{consumer.id}")
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


@pytest.mark.slow
@pytest.mark.parametrize(
    "wechat_accepted", [False, True], ids=["killed-before-wechat-acted", "killed-after-wechat-accepted"]
)
def test_kill_9_mid_payout_then_recovery_pays_exactly_once(crash: Crash, wechat_accepted: bool) -> None:
    # The transfer call hangs for a minute; with after_commit WeChat has created the bill first.
    crash.sandbox(
        "POST",
        "/faults",
        {
            "mchid": crash.mchid,
            "api": "v3.transfer_bill",
            "mode": "timeout",
            "delay_s": 60,
            "after_commit": wechat_accepted,
            "count": 1,
        },
    )
    payout_id = crash.withdraw(1500, f"crash-{wechat_accepted}")
    worker = crash.start_worker()

    def inside_the_call() -> bool:
        fired = [f for f in crash.sandbox("GET", "/faults")["faults"] if f["api"] == "v3.transfer_bill"]
        return bool(fired and fired[0]["fired"] == 1)

    _wait(inside_the_call, "the work horse to be inside the WeChat call")
    if wechat_accepted:
        _wait(crash.bills, "WeChat to hold the bill")
    orphan = crash.payout(payout_id)
    # Saved before the call: SUBMITTING, its number, the lease — the horse never stored an answer.
    assert orphan.status is PayoutStatus.SUBMITTING and orphan.claim_token is not None
    assert orphan.bill_no == f"HLP{payout_id:010d}"
    _stop(worker)  # kill -9 the process group

    assert len(crash.bills()) == (1 if wechat_accepted else 0)
    with crash.app.app_context():
        queue = get_queue(QueueName.PAYOUTS)
        started = StartedJobRegistry(queue=queue)
        [dead_job] = started.get_job_ids()

    # A new worker comes up. The orphan's lease still holds: the outbox leaves the row alone.
    crash.start_worker()
    assert crash.sweep(payout_id) == 0
    # RQ's abandoned-job path: once the dead horse's entry expires, cleanup fails the job.
    with crash.app.app_context():
        started.cleanup(timestamp=time.time() + 86400)
        assert started.get_job_ids() == []
        assert dead_job in FailedJobRegistry(queue=queue).get_job_ids()
    # The lease runs out (lease_length(); not waited for here): the sweep queues the row again.
    assert crash.sweep(payout_id, expire_lease=True) == 1
    accepted = _wait(
        lambda: (p := crash.payout(payout_id)).status is PayoutStatus.ACCEPTED and p,
        "the recovery pass (query with the same number)",
    )
    assert accepted.bill_no == orphan.bill_no
    assert accepted.history[-1]["calls"] == (["query"] if wechat_accepted else ["query", "submit"])
    [bill] = crash.bills()
    assert (bill["key"], bill["amount_fen"], bill["status"]) == (orphan.bill_no, 1500, "WAIT_USER_CONFIRM")

    crash.sandbox("POST", f"/transfer-bills/{orphan.bill_no}/confirm")
    assert crash.sweep(payout_id, due=True) == 1
    done = _wait(
        lambda: (p := crash.payout(payout_id)).status is PayoutStatus.SUCCEEDED and p, "the payout to succeed"
    )
    assert done.bill_no == orphan.bill_no and done.attempt == 1
    bills = crash.bills()
    assert [(b["key"], b["paid"]) for b in bills] == [(orphan.bill_no, True)], crash.logs_text()
    code, output = crash.cli("ledger", "check")
    assert code == 0 and "accounts" in output, output
    code, output = crash.cli("payouts", "check")
    assert code == 0, output
