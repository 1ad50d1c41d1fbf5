"""``limits.counters_match_rows`` in ``flask ledger check``: a counter equals the withdrawals of its Beijing day
(rejected ones excluded), every withdrawal lies in a counter, and a limit without a rule is reported."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from app.core.money import Money
from app.extensions import db
from app.ledger.checks import registered_checks, unregister_check
from app.limits import checks as limit_checks
from app.limits.checks import counters_match_rows
from app.limits.models import LimitCounter
from app.limits.service import WITHDRAWAL_DAILY_FEN
from app.merchants.models import Merchant
from app.withdrawals.models import Withdrawal, WithdrawalStatus
from tests.factories import make_consumer, make_merchant

CHECK = "limits.counters_match_rows"
# 2026-12-06 00:00 in Beijing is 2026-12-05 16:00 UTC: the day's counter starts there.
DAY = datetime(2026, 12, 5, 16, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    """The check as ``create_app`` registers it (registered here too, and removed only if added here)."""
    added = CHECK not in registered_checks()
    limit_checks.register()
    yield
    if added:
        unregister_check(CHECK)


@pytest.fixture
def merchant(db_session: Session) -> Merchant:
    return make_merchant()


def _withdrawal(
    merchant: Merchant,
    consumer_id: int,
    fen: int,
    at: datetime,
    status: WithdrawalStatus = WithdrawalStatus.PENDING_REVIEW,
) -> Withdrawal:
    withdrawal = Withdrawal(
        merchant_id=merchant.id,
        consumer_id=consumer_id,
        idempotency_key=f"w-{consumer_id}-{at.isoformat()}-{fen}",
        amount=Money(fen),
        fee=Money(0),
        status=status,
        history=[],
        created_at=at,
    )
    db.session.add(withdrawal)
    db.session.flush()
    return withdrawal


def _counter(
    merchant: Merchant, subject_id: int, used: int, start: datetime = DAY, name: str = WITHDRAWAL_DAILY_FEN
) -> LimitCounter:
    counter = LimitCounter(
        merchant_id=merchant.id, name=name, subject_id=subject_id, window_start=start, used=used
    )
    db.session.add(counter)
    db.session.flush()
    return counter


def _check(app: Flask) -> tuple[int, list[str]]:
    result = app.test_cli_runner().invoke(args=["ledger", "check"])
    return result.exit_code, result.output.splitlines()


def test_counters_that_say_what_their_withdrawals_say_pass(app: Flask, merchant: Merchant) -> None:
    alice, bob = make_consumer(merchant).id, make_consumer(merchant).id
    # Alice's Beijing day: its first and last second; a rejected withdrawal gave its share back.
    _withdrawal(merchant, alice, 300, DAY)
    _withdrawal(merchant, alice, 200, DAY + timedelta(days=1, seconds=-1))
    _withdrawal(merchant, alice, 900, DAY + timedelta(hours=2), WithdrawalStatus.REJECTED)
    _counter(merchant, alice, 500)
    # The next Beijing day starts at 16:00 UTC: its own counter.
    _withdrawal(merchant, alice, 100, DAY + timedelta(days=1))
    _counter(merchant, alice, 100, DAY + timedelta(days=1))
    _withdrawal(merchant, bob, 700, DAY + timedelta(hours=5))
    _counter(merchant, bob, 700)
    _counter(merchant, bob, 0, DAY - timedelta(days=3))  # taken, then given back in full

    assert counters_match_rows() == []
    code, lines = _check(app)
    assert code == 0, lines


def test_a_counter_below_its_withdrawals_fails_and_ledger_check_exits_1(
    app: Flask, merchant: Merchant
) -> None:
    """The issue #18 race: 20 × 100 fen against a 1000 fen limit, the counter (or a sum) saw 1000."""
    alice = make_consumer(merchant).id
    for i in range(14):
        _withdrawal(merchant, alice, 100, DAY + timedelta(minutes=i))
    counter = _counter(merchant, alice, 1000)

    assert counters_match_rows() == [
        f"counter {counter.id} ({WITHDRAWAL_DAILY_FEN}, merchant {merchant.id}, scope 0, subject {alice}, "
        f"{DAY.isoformat()}): used 1000, its 14 withdrawals sum to 1400"
    ]
    code, lines = _check(app)
    assert code == 1
    assert f"{CHECK}: counter {counter.id} ({WITHDRAWAL_DAILY_FEN}, " in "\n".join(lines)
    assert lines[-1].startswith("ledger check FAILED")


def test_a_rejected_withdrawal_not_given_back_fails(merchant: Merchant) -> None:
    alice = make_consumer(merchant).id
    _withdrawal(merchant, alice, 300, DAY)
    _withdrawal(merchant, alice, 200, DAY, WithdrawalStatus.REJECTED)
    counter = _counter(merchant, alice, 500)
    assert counters_match_rows() == [
        f"counter {counter.id} ({WITHDRAWAL_DAILY_FEN}, merchant {merchant.id}, scope 0, subject {alice}, "
        f"{DAY.isoformat()}): used 500, its 1 withdrawals sum to 300"
    ]


def test_a_withdrawal_in_no_counter_fails(merchant: Merchant) -> None:
    alice = make_consumer(merchant).id
    _withdrawal(merchant, alice, 300, DAY + timedelta(hours=1))
    _withdrawal(merchant, alice, 400, DAY + timedelta(hours=3), WithdrawalStatus.APPROVED)
    # A counter for the wrong day does not cover them (and itself says too much).
    wrong = _counter(merchant, alice, 700, DAY - timedelta(days=1))

    violations = counters_match_rows()

    assert violations == [
        f"counter {wrong.id} ({WITHDRAWAL_DAILY_FEN}, merchant {merchant.id}, scope 0, subject {alice}, "
        f"{(DAY - timedelta(days=1)).isoformat()}): used 700, its 0 withdrawals sum to 0",
        f"{WITHDRAWAL_DAILY_FEN}: 2 withdrawals of subject {alice} at merchant {merchant.id} (scope 0) "
        f"on {DAY.isoformat()} (700) lie in no counter",
    ]


def test_only_rejected_withdrawals_need_no_counter(merchant: Merchant) -> None:
    alice = make_consumer(merchant).id
    _withdrawal(merchant, alice, 300, DAY, WithdrawalStatus.REJECTED)
    assert counters_match_rows() == []


def test_a_counter_of_another_merchant_does_not_count(merchant: Merchant) -> None:
    alice = make_consumer(merchant).id
    other = make_merchant()
    _withdrawal(merchant, alice, 300, DAY)
    stray = _counter(other, alice, 300)
    assert counters_match_rows() == [
        f"counter {stray.id} ({WITHDRAWAL_DAILY_FEN}, merchant {other.id}, scope 0, subject {alice}, "
        f"{DAY.isoformat()}): used 300, its 0 withdrawals sum to 0",
        f"{WITHDRAWAL_DAILY_FEN}: 1 withdrawals of subject {alice} at merchant {merchant.id} (scope 0) "
        f"on {DAY.isoformat()} (300) lie in no counter",
    ]


def test_a_window_off_the_beijing_midnight_fails(merchant: Merchant) -> None:
    alice = make_consumer(merchant).id
    counter = _counter(merchant, alice, 0, DAY + timedelta(hours=8))  # UTC midnight, not Beijing's
    assert counters_match_rows() == [
        f"counter {counter.id} ({WITHDRAWAL_DAILY_FEN}): window "
        f"{(DAY + timedelta(hours=8)).isoformat()} is not a window start"
    ]


def test_a_limit_without_a_rule_fails(merchant: Merchant) -> None:
    alice = make_consumer(merchant).id
    counter = _counter(merchant, alice, 5, name="red_packet.daily_count")
    assert counters_match_rows() == [
        f"counter {counter.id}: limit 'red_packet.daily_count' has no rule to check it against"
    ]
