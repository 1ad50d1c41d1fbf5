"""Races on real commits: every thread has its own app context, session and database connection."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import pytest
from flask import Flask
from flask_migrate import upgrade

from app.core.money import Money
from app.extensions import db
from app.ledger.accounts import consumer_accounts, merchant_accounts
from app.ledger.checks import run_checks
from app.ledger.models import EntryReason
from app.ledger.service import Overdraft, balance, post_entry
from app.settings import Settings
from tests.conftest import AppFactory
from tests.factories import make_merchant
from tests.ledger.conftest import entry_count, fund, move, postings_sum, stored_balance

T = TypeVar("T")
CONSUMER = 7


@dataclass
class Committed:
    app: Flask
    merchant_id: int


@pytest.fixture
def committed(settings: Settings, empty_database_url: str, app_factory: AppFactory) -> Iterator[Committed]:
    """A fresh database at head (this test's commits are real), with one merchant in it."""
    database = settings.database.model_copy(update={"url": empty_database_url, "pool_size": 25})
    application = app_factory(settings.model_copy(update={"database": database}))
    with application.app_context():
        upgrade()
        merchant_id = make_merchant().id
        db.session.commit()
    yield Committed(app=application, merchant_id=merchant_id)


def _race(n: int, call: Callable[[int], T]) -> list[T]:
    """Run ``call(i)`` for i in range(n) on n threads released together."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T:
        barrier.wait(timeout=30)
        return call(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def _clean(app: Flask) -> None:
    with app.app_context():
        assert [(r.name, r.violations) for r in run_checks() if r.violations] == []


def test_twenty_withdrawals_of_100_from_1000_exactly_ten_succeed(committed: Committed) -> None:
    app, merchant_id = committed.app, committed.merchant_id
    with app.app_context():
        wallet = consumer_accounts(merchant_id, CONSUMER)
        fund(wallet.available, 1_000, merchant_id=merchant_id)
        db.session.commit()
        available_id = wallet.available.id
    lowest: list[int] = []
    racing = threading.Event()
    racing.set()

    def watch() -> None:
        # An outside observer polling committed state: the balance must never be seen below zero.
        with app.app_context():
            while racing.is_set():
                lowest.append(stored_balance(available_id))
                db.session.rollback()

    def withdraw(i: int) -> str:
        with app.app_context():
            try:
                wallet = consumer_accounts(merchant_id, CONSUMER)
                move(wallet.available, wallet.withdrawing, 100, merchant_id=merchant_id, key=f"withdraw:{i}")
                db.session.commit()
                return "ok"
            except Overdraft:
                db.session.rollback()
                return "refused"

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        outcomes = _race(20, withdraw)
    finally:
        racing.clear()
        watcher.join(timeout=30)

    assert sorted(outcomes) == ["ok"] * 10 + ["refused"] * 10
    assert lowest and min(lowest) >= 0
    with app.app_context():
        wallet = consumer_accounts(merchant_id, CONSUMER)
        assert (balance(wallet.available), balance(wallet.withdrawing)) == (Money(0), Money(1_000))
        assert postings_sum(wallet.available.id) == 0
    _clean(app)


def test_one_key_posted_by_ten_threads_moves_money_once(committed: Committed) -> None:
    app, merchant_id = committed.app, committed.merchant_id
    with app.app_context():
        budget = merchant_accounts(merchant_id).budget
        fund(budget, 1_000, merchant_id=merchant_id)
        db.session.commit()

    def rebate(_: int) -> bool:
        with app.app_context():
            wallet = consumer_accounts(merchant_id, CONSUMER)
            entry = post_entry(
                key="rebate:order-42:rule-1",
                reason=EntryReason.REBATE_PENDING,
                cause_type="order",
                cause_id="42",
                lines=[(merchant_accounts(merchant_id).budget, Money(-250)), (wallet.pending, Money(250))],
                merchant_id=merchant_id,
            )
            db.session.commit()
            return entry is not None

    assert sorted(_race(10, rebate)) == [False] * 9 + [True]
    with app.app_context():
        assert entry_count("rebate:order-42:rule-1") == 1
        assert balance(merchant_accounts(merchant_id).budget) == Money(750)
        assert balance(consumer_accounts(merchant_id, CONSUMER).pending) == Money(250)
    _clean(app)


def test_opposite_transfers_do_not_deadlock(committed: Committed) -> None:
    app, merchant_id = committed.app, committed.merchant_id
    with app.app_context():
        budget, rebate = merchant_accounts(merchant_id)
        fund(budget, 10_000, merchant_id=merchant_id)
        fund(rebate, 10_000, merchant_id=merchant_id)
        db.session.commit()

    def shuffle(i: int) -> None:
        # Half the threads move budget -> rebate, half rebate -> budget: without one lock order, a deadlock.
        with app.app_context():
            for round_ in range(10):
                budget, rebate = merchant_accounts(merchant_id)
                source, target = (budget, rebate) if i % 2 else (rebate, budget)
                move(source, target, 10, merchant_id=merchant_id, key=f"shuffle:{i}:{round_}")
                db.session.commit()

    _race(20, shuffle)
    with app.app_context():
        budget, rebate = merchant_accounts(merchant_id)
        assert (balance(budget), balance(rebate)) == (Money(10_000), Money(10_000))
        assert entry_count() == 2 + 200
    _clean(app)


def test_first_use_of_an_account_by_many_threads_creates_it_once(committed: Committed) -> None:
    app, merchant_id = committed.app, committed.merchant_id

    def wallet_ids(_: int) -> tuple[int, ...]:
        with app.app_context():
            ids = tuple(account.id for account in consumer_accounts(merchant_id, 99))
            db.session.commit()
            return ids

    assert len(set(_race(12, wallet_ids))) == 1
