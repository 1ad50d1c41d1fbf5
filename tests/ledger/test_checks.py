"""``flask ledger check``: clean on a healthy ledger; lists each corruption and exits 1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.core.money import Money
from app.ledger.accounts import consumer_accounts, merchant_accounts
from app.ledger.checks import register_check, registered_checks, unregister_check
from app.ledger.models import EntryReason
from app.ledger.service import post_entry
from app.merchants.models import Merchant
from tests.ledger.conftest import fund, move


def _check(app: Flask) -> tuple[int, list[str]]:
    result = app.test_cli_runner().invoke(args=["ledger", "check"])
    return result.exit_code, result.output.splitlines()


@pytest.fixture
def busy_ledger(merchant: Merchant) -> Merchant:
    """A little of everything: funding, a rebate, settlement, a withdrawal, a clawback into debt."""
    budget = merchant_accounts(merchant.id).budget
    wallet = consumer_accounts(merchant.id, 1)
    fund(budget, 5_000, merchant_id=merchant.id)
    move(budget, wallet.pending, 300, merchant_id=merchant.id)
    move(wallet.pending, wallet.available, 300, merchant_id=merchant.id)
    move(wallet.available, wallet.withdrawing, 300, merchant_id=merchant.id)
    post_entry(
        key="clawback:refund-1",
        reason=EntryReason.CLAWBACK,
        cause_type="refund",
        cause_id="1",
        lines=[(wallet.debt, Money(-120)), (budget, Money(120))],
        merchant_id=merchant.id,
    )
    return merchant


def test_a_healthy_ledger_is_clean(app: Flask, busy_ledger: Merchant) -> None:
    code, lines = _check(app)
    assert code == 0, lines
    assert len(lines) == 1 and lines[0].startswith(f"ledger clean: {len(registered_checks())} checks passed")


def test_a_corrupted_balance_and_an_unbalanced_entry_are_both_listed(
    app: Flask, busy_ledger: Merchant, db_session: Session
) -> None:
    available = consumer_accounts(busy_ledger.id, 1).available
    # Corruption from outside the service, as a hand-written fix or a bad migration would do it.
    db_session.execute(
        text("UPDATE ledger_accounts SET balance = balance + 7 WHERE id = :id"), {"id": available.id}
    )
    entry_id = db_session.execute(
        text(
            "INSERT INTO journal_entries"
            " (merchant_id, idempotency_key, reason, cause_type, cause_id, memo, created_at)"
            " VALUES (:m, 'raw:unbalanced', 'correction', 'test', 'raw', '', CURRENT_TIMESTAMP) RETURNING id"
        ),
        {"m": busy_ledger.id},
    ).scalar_one()
    db_session.execute(
        text(
            "INSERT INTO postings (entry_id, account_id, amount, created_at)"
            " VALUES (:e, :a, 50, CURRENT_TIMESTAMP)"
        ),
        {"e": entry_id, "a": merchant_accounts(busy_ledger.id).rebate.id},
    )

    code, lines = _check(app)

    assert code == 1
    assert f"entries_balance: entry {entry_id}: postings sum to 50 fen, not 0" in lines
    rebate = merchant_accounts(busy_ledger.id).rebate
    assert any(line.startswith(f"cached_balances_match: account {available.id} ") for line in lines)
    assert any(line.startswith(f"cached_balances_match: account {rebate.id} ") for line in lines)
    assert "trial_balance: cached balances sum to 7 fen, not 0" in lines
    assert lines[-1].startswith("ledger check FAILED")


def test_an_entry_without_postings_is_listed(app: Flask, busy_ledger: Merchant, db_session: Session) -> None:
    db_session.execute(
        text(
            "INSERT INTO journal_entries"
            " (merchant_id, idempotency_key, reason, cause_type, cause_id, memo, created_at)"
            " VALUES (NULL, 'raw:empty', 'correction', 'test', 'raw', '', CURRENT_TIMESTAMP)"
        )
    )
    code, lines = _check(app)
    assert code == 1
    assert any(line.startswith("entries_have_postings: ") and "(raw:empty)" in line for line in lines)


def test_a_forbidden_negative_flag_is_listed(app: Flask, busy_ledger: Merchant, db_session: Session) -> None:
    # With the flag flipped the database would accept a negative balance: the check notices the flip.
    pending = consumer_accounts(busy_ledger.id, 1).pending
    db_session.execute(
        text("UPDATE ledger_accounts SET allow_negative = TRUE WHERE id = :id"), {"id": pending.id}
    )
    code, lines = _check(app)
    assert code == 1
    assert any(line.startswith(f"no_forbidden_negative: account {pending.id} ") for line in lines)


@pytest.fixture
def domain_checks() -> Iterator[None]:
    yield
    unregister_check("test.one_credit_per_event")
    unregister_check("test.crashes")


def test_domain_checks_plug_in(app: Flask, busy_ledger: Merchant, domain_checks: None) -> None:
    register_check("test.one_credit_per_event", lambda: ["event 9 credited twice by rule 3"])

    def crashes() -> list[str]:
        raise RuntimeError("boom")

    register_check("test.crashes", crashes)
    code, lines = _check(app)
    assert code == 1
    assert "test.one_credit_per_event: event 9 credited twice by rule 3" in lines
    assert "test.crashes: check crashed: RuntimeError: boom" in lines
    assert lines[-1].startswith(
        f"ledger check FAILED: 2 violation(s) in 2 of {len(registered_checks())} checks"
    )
