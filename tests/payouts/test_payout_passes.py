"""What one pass writes, and when: nothing of a pass survives a failure before WeChat hears of it, no
transaction is open while WeChat answers, every exchange is in the gateway log, and a changed merchant is
read again at its next pass."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.core.db import utcnow
from app.extensions import db
from app.gateway.log import PendingLog
from app.gateway.models import GatewayEvent
from app.ledger.service import find_entry
from app.merchants.credentials import seal_secrets
from app.merchants.service import merchant_secrets
from app.payouts import service
from app.payouts.models import PayoutStatus
from app.reviews.models import ReviewItem
from jobs.payouts import process_payout
from tests.payouts.conftest import Payee, ledger_clean


def test_a_pass_that_fails_before_any_call_keeps_only_its_claim(
    payee: Payee, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim, SUBMITTING and the ledger move are one transaction: an error after the move (here, reading
    the merchant) takes all of it back, and the claim alone is left so retries wait for the lease."""
    created = payee.withdraw(1000, "broken")
    payout = payee.payout_of(created.json["id"])

    def broken(merchant_id: int, updated_at: object) -> Any:
        raise RuntimeError("merchant unreadable")

    with monkeypatch.context() as patch:
        patch.setattr(service, "payout_merchant", broken)
        with pytest.raises(RuntimeError):
            process_payout(payout.id)
    db.session.refresh(payout)
    assert payout.status is PayoutStatus.CREATED
    assert payout.claim_token is not None and payout.claimed_until is not None
    assert payout.claimed_until > utcnow()
    assert [h["event"] for h in payout.history] == ["created"]
    assert find_entry(f"payout:{payout.id}:submit") is None
    assert payee.wallet()["withdrawing_fen"] == 1000
    assert payee.sandbox_payouts() == []
    assert process_payout(payout.id) == "skipped"  # the lease keeps a retry out

    payout.claimed_until = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert payee.run(payout) == "accepted"
    assert len(payee.sandbox_payouts()) == 1
    ledger_clean()


def test_no_transaction_is_open_while_wechat_answers_and_every_exchange_is_logged(
    payee: Payee, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass that found its row SUBMITTING queries the number, then resends it: two calls, and between them
    no database transaction (on SQLite one would hold the write lock through the second call)."""
    created = payee.withdraw(1000, "resolve")
    payout = payee.payout_of(created.json["id"])
    step = service.start_pass(payout.id)
    db.session.commit()
    assert step is not None  # the pass dies here, before WeChat heard of the payout
    payout.claimed_until = utcnow() - timedelta(seconds=1)
    db.session.commit()

    open_during: list[bool] = []
    held = PendingLog.__call__

    def note(log: PendingLog, event: Any) -> None:
        open_during.append(db.session().in_transaction())
        held(log, event)

    monkeypatch.setattr(PendingLog, "__call__", note)
    assert payee.run(payout) == "accepted"
    assert open_during == [False, False]
    assert payout.query_calls == 1 and payout.submit_calls == 1
    logged = db.session.scalars(
        select(GatewayEvent.api)
        .where(GatewayEvent.merchant_id == payout.merchant_id, GatewayEvent.idempotency_key == payout.bill_no)
        .order_by(GatewayEvent.id)
    ).all()
    assert logged == ["transfer.query", "transfer.create"]
    ledger_clean()


def test_a_merchant_changed_since_its_last_pass_is_read_again(payee: Payee) -> None:
    """Each process keeps the merchant a pass needs, under the row's last update (read with the claim):
    credentials removed after a pass are missed by the next one, and restored ones are used again."""
    first = payee.payout_of(payee.withdraw(1000, "before").json["id"])
    assert payee.run(first) == "accepted"

    merchant = payee.shop.merchant
    secrets = merchant_secrets(merchant)
    merchant.sealed_credentials = seal_secrets(merchant.id, secrets.merged({"pay_private_key_pem": ""}))
    db.session.commit()
    second = payee.payout_of(payee.withdraw(1000, "without").json["id"])
    assert payee.run(second) == "submitting"
    assert len(payee.sandbox_payouts()) == 1
    flags = db.session.scalars(select(ReviewItem).where(ReviewItem.kind == "payout_unconfigured")).all()
    assert len(flags) == 1

    merchant.sealed_credentials = seal_secrets(merchant.id, secrets)
    db.session.commit()
    assert payee.run(second) == "accepted"
    assert len(payee.sandbox_payouts()) == 2
    ledger_clean()


def test_an_operator_retry_during_a_pass_is_kept_with_its_outcome(payee: Payee) -> None:
    """The outcome is written over the row as the pass left it only if nothing was noted on the row since;
    an operator's retry while WeChat answered is such a note: the row is read again and both are kept."""
    from app.audit.service import CLI
    from app.payouts.operations import retry_payout

    created = payee.withdraw(1000, "retried")
    payout = payee.payout_of(created.json["id"])
    step = service.start_pass(payout.id)
    db.session.commit()
    assert step is not None
    retry_payout(merchant_id=payout.merchant_id, payout_id=payout.id, actor=CLI)
    db.session.commit()

    outcome = service.run_pass(step)
    recorded = service.record_outcome(payout.id, step.token, outcome, log=step.log, seen=step.row)
    db.session.commit()
    assert recorded is not None and recorded.status is PayoutStatus.ACCEPTED
    db.session.refresh(payout)
    assert payout.status is PayoutStatus.ACCEPTED and payout.claim_token is None
    assert [h["event"] for h in payout.history] == [
        "created",
        "pass:submit",
        "operator:retry",
        "wechat:accepted",
    ]
    assert payout.submit_calls == 1
    ledger_clean()


def test_a_late_outcome_of_a_pass_whose_claim_was_taken_over_changes_nothing(payee: Payee) -> None:
    created = payee.withdraw(1000, "late")
    payout = payee.payout_of(created.json["id"])
    step = service.start_pass(payout.id)
    db.session.commit()
    assert step is not None
    outcome = service.run_pass(step)  # WeChat accepted; then the lease ran out and another pass took over
    payout.claimed_until = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert payee.run(payout) == "accepted"
    history = list(payout.history)

    assert service.record_outcome(payout.id, step.token, outcome, log=step.log, seen=step.row) is None
    db.session.commit()
    db.session.refresh(payout)
    assert payout.history == history and payout.query_calls == 1 and payout.submit_calls == 0
    ledger_clean()
