"""Operations on payouts that did not finish on their own: stuck list, retry, resolve (audited), the query
deadline (sweep + ``payouts check``) and the red-packet rate limit."""

from __future__ import annotations

import time
from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy import select

from app.audit.models import AuditEntry
from app.auth.principals import Role
from app.core.db import utcnow
from app.extensions import db
from app.merchants.models import PayoutRail
from app.payouts.models import Payout, PayoutStatus
from app.payouts.operations import query_deadline
from app.queue import QueueName, get_queue, get_redis
from jobs.payouts import query_uncertain_payouts
from tests.console_client import Console
from tests.factories import make_staff
from tests.payouts.conftest import Payee, ledger_clean


def _finance(payee: Payee, client: FlaskClient) -> Console:
    finance = make_staff(merchant=payee.shop.merchant, role=Role.FINANCE)
    db.session.commit()
    return Console(client, payee.shop.merchant.slug).login(finance.email)


def _unknown(payee: Payee, key: str, *, reached_wechat: bool) -> Payout:
    payee.fault(api="v3.transfer_bill", mode="timeout", count=1, after_commit=reached_wechat)
    created = payee.withdraw(1000, key)
    payout = payee.payout_of(created.json["id"])
    assert payee.run(payout) == "unknown"
    return payout


def _age(payout: Payout, by: timedelta) -> None:
    """Move the payout's whole past back by ``by`` (as if the sandbox clock had advanced)."""
    payout.created_at = payout.created_at - by
    payout.history = [{**h, "at": (utcnow().fromisoformat(h["at"]) - by).isoformat()} for h in payout.history]
    db.session.commit()


def _audits(action: str) -> list[AuditEntry]:
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_retry_resolves_unknown_by_query_with_the_same_number(payee: Payee, client: FlaskClient) -> None:
    payout = _unknown(payee, "retry", reached_wechat=True)
    bill_no = payout.bill_no
    assert payout.next_attempt_at > utcnow()  # backing off
    get_queue(QueueName.PAYOUTS).empty()
    console = _finance(payee, client)
    retried = console.post(f"/api/console/v1/payouts/{payout.id}/retry")
    assert retried.status_code == 200, retried.json
    assert [job.args for job in get_queue(QueueName.PAYOUTS).get_jobs()] == [(payout.id,)]
    assert payee.run(payout, due_now=False) == "accepted"
    assert (payout.bill_no, payout.submit_calls, payout.query_calls) == (bill_no, 1, 1)
    assert [(r["key"], r["amount_fen"]) for r in payee.sandbox_payouts()] == [(bill_no, 1000)]
    assert [a.target_id for a in _audits("payout.retry")] == [str(payout.id)]

    payee.shop.sandbox.post(f"/transfer-bills/{bill_no}/confirm")
    assert payee.run(payout) == "succeeded"
    assert console.post(f"/api/console/v1/payouts/{payout.id}/retry").status_code == 409
    ledger_clean()


def test_resolve_refused_when_wechat_contradicts_then_settles(payee: Payee, client: FlaskClient) -> None:
    payout = _unknown(payee, "resolve-ok", reached_wechat=True)
    console = _finance(payee, client)
    url = f"/api/console/v1/payouts/{payout.id}/resolve"
    # WeChat holds the bill awaiting the user's confirmation: neither outcome is true yet.
    for outcome in ("failed", "succeeded"):
        refused = console.post(url, json={"outcome": outcome, "reason": "checked"})
        assert refused.status_code == 409, refused.json
    payee.shop.sandbox.post(f"/transfer-bills/{payout.bill_no}/confirm")
    refused = console.post(url, json={"outcome": "failed", "reason": "user says nothing came"})
    assert refused.status_code == 409
    assert refused.json["error"]["details"]["wechat_state"] == "SUCCESS"
    assert console.post(url, json={"outcome": "succeeded"}).status_code == 422  # reason required
    resolved = console.post(url, json={"outcome": "succeeded", "reason": "seen in merchant platform"})
    assert resolved.status_code == 200, resolved.json
    assert resolved.json["status"] == "succeeded"
    db.session.refresh(payout)
    assert payout.status is PayoutStatus.SUCCEEDED
    assert payee.wallet()["available_fen"] == 300_00 - 1000
    [audit] = _audits("payout.resolve")
    assert audit.after is not None and audit.after["reason"] == "seen in merchant platform"
    assert console.post(url, json={"outcome": "succeeded", "reason": "again"}).status_code == 409
    ledger_clean()


def test_resolve_failed_returns_the_money_when_wechat_has_no_bill(payee: Payee, client: FlaskClient) -> None:
    payout = _unknown(payee, "resolve-failed", reached_wechat=False)
    console = _finance(payee, client)
    url = f"/api/console/v1/payouts/{payout.id}/resolve"
    assert console.post(url, json={"outcome": "succeeded", "reason": "guess"}).status_code == 409
    resolved = console.post(url, json={"outcome": "failed", "reason": "no such bill at WeChat"})
    assert resolved.status_code == 200, resolved.json
    db.session.refresh(payout)
    assert payout.status is PayoutStatus.FAILED
    assert payee.wallet()["available_fen"] == 300_00
    assert payee.sandbox_payouts() == []
    ledger_clean()


def test_stuck_listed_checked_and_swept(payee: Payee, client: FlaskClient) -> None:
    payout = _unknown(payee, "stuck", reached_wechat=True)
    runner = payee.shop.client.application.test_cli_runner()
    console = _finance(payee, client)
    assert console.get("/api/console/v1/payouts?status=stuck").json == []
    assert runner.invoke(args=["payouts", "check"]).exit_code == 0
    assert query_uncertain_payouts() == 0  # queried recently enough: nothing to do

    _age(payout, query_deadline() + timedelta(minutes=1))  # e.g. the payouts worker was down
    stuck = console.get("/api/console/v1/payouts?status=stuck")
    assert [p["id"] for p in stuck.json] == [payout.id]
    result = runner.invoke(args=["payouts", "check"])
    assert result.exit_code == 1, result.output
    assert f"{payout.id}\t{payout.bill_no}\tunknown" in result.output

    # The sweep queries it (same number), whatever its backoff, and the query is on record.
    assert query_uncertain_payouts() == 1
    db.session.refresh(payout)
    assert payout.status is PayoutStatus.ACCEPTED and payout.query_calls == 1
    assert payout.history[-1]["calls"] == ["query"]
    result = runner.invoke(args=["payouts", "check"])
    assert result.exit_code == 0, result.output
    assert console.get("/api/console/v1/payouts?status=stuck").json == []
    assert len(payee.sandbox_payouts()) == 1
    ledger_clean()


def test_a_failing_query_is_still_a_query_on_record(payee: Payee) -> None:
    """A payout whose queries keep failing is still *queried*: check passes, the stuck list shows it."""
    payout = _unknown(payee, "stuck-queried", reached_wechat=False)
    _age(payout, query_deadline() + timedelta(minutes=1))
    payee.fault(api="v3.transfer_bill_query", mode="error", code="SYSTEM_ERROR", count=1)
    assert query_uncertain_payouts() == 1
    db.session.refresh(payout)
    assert payout.status is PayoutStatus.UNKNOWN and payout.query_calls == 1
    runner = payee.shop.client.application.test_cli_runner()
    assert runner.invoke(args=["payouts", "check"]).exit_code == 0
    ledger_clean()


def test_red_packets_wait_when_the_merchant_rate_is_saturated(payee: Payee) -> None:
    payee.use_rail(PayoutRail.CASH_RED_PACKET)
    merchant = payee.shop.merchant
    settings = payee.shop.client.application.extensions["hongli.settings"]
    limit = settings.payouts.red_packets_per_second
    assert limit == 30
    redis = get_redis()
    window = int(time.time())
    keys = [f"{settings.queue.prefix}:ratelimit:redpack:{merchant.id}:{w}" for w in range(window, window + 6)]
    for key in keys:  # this second and the next few: already `limit` red packets sent
        redis.set(key, limit, ex=10)
    created = payee.withdraw(1000, "throttled")
    payout = payee.payout_of(created.json["id"])
    get_queue(QueueName.PAYOUTS).empty()

    assert payee.run(payout) == "throttled"
    assert payee.sandbox_payouts() == []  # WeChat was not called
    assert payout.status is PayoutStatus.SUBMITTING and payout.submit_calls == 0
    assert timedelta(0) < payout.next_attempt_at - utcnow() <= timedelta(seconds=2)
    scheduled = get_queue(QueueName.PAYOUTS).scheduled_job_registry.get_job_ids()
    assert len(scheduled) == 1

    redis.delete(*keys)
    assert payee.run(payout) == "accepted"  # the same number: queried (none), then sent
    assert (payout.submit_calls, payout.query_calls) == (1, 1)
    assert [r["key"] for r in payee.sandbox_payouts()] == [payout.bill_no]
    ledger_clean()
