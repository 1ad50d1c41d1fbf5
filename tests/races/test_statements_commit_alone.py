"""A view marked ``statements_commit_alone`` (a pool grab): on PostgreSQL each statement commits by itself,
until ``transaction_from_here``; on SQLite (and inside a transaction) nothing changes. Shown with the one
thing that tells them apart: what a failure after a write leaves behind."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from app.consumers.models import Consumer
from app.core.tx import statements_commit_alone, transaction_from_here
from app.extensions import db
from app.merchants.models import Merchant
from tests.factories import make_consumer
from tests.races.conftest import Race

pytestmark = pytest.mark.race


class Failed(Exception):
    pass


def _consumer(race: Race) -> int:
    with race.context():
        merchant = db.session.get(Merchant, race.merchant_id)
        assert merchant is not None
        consumer = make_consumer(merchant, nickname="before")
        db.session.commit()
        return consumer.id


def _nickname(race: Race, consumer_id: int) -> str | None:
    with race.context():
        return db.session.scalar(select(Consumer.nickname).where(Consumer.id == consumer_id))


def _rename(consumer_id: int, name: str) -> None:
    db.session.execute(update(Consumer).where(Consumer.id == consumer_id).values(nickname=name))


def _run(race: Race, view: object) -> None:
    with race.context():
        try:
            view()  # type: ignore[operator]
        except Failed:
            db.session.rollback()


def test_a_write_commits_alone_on_postgresql_and_with_its_transaction_elsewhere(race: Race) -> None:
    consumer_id = _consumer(race)

    @statements_commit_alone
    def view() -> None:
        _rename(consumer_id, "after")
        raise Failed

    _run(race, view)
    # PostgreSQL (directly or through PgBouncer) committed the statement alone; SQLite rolled it back.
    expected = "before" if race.engine == "sqlite" else "after"
    assert _nickname(race, consumer_id) == expected


def test_from_transaction_from_here_writes_hold_together_on_every_engine(race: Race) -> None:
    consumer_id = _consumer(race)

    @statements_commit_alone
    def view() -> None:
        db.session.scalar(select(Consumer.id).where(Consumer.id == consumer_id))  # a read, alone
        transaction_from_here()
        _rename(consumer_id, "after")
        raise Failed

    _run(race, view)
    assert _nickname(race, consumer_id) == "before"


def test_inside_a_transaction_nothing_changes(race: Race) -> None:
    consumer_id = _consumer(race)

    @statements_commit_alone
    def view() -> None:
        _rename(consumer_id, "after")
        raise Failed

    with race.context():
        db.session.scalar(select(Consumer.id).where(Consumer.id == consumer_id))  # the transaction begins
        try:
            view()
        except Failed:
            db.session.rollback()
    assert _nickname(race, consumer_id) == "before"
