"""The quick start's SQLite runs the same hand-built statements as PostgreSQL: events emitted once,
ledger entries posted once (a replay changes nothing), accounts created once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from app.audit.service import CLI
from app.core.money import Money
from app.core.tx import commit
from app.events.bus import Event, emit
from app.events.models import DomainEvent
from app.extensions import db
from app.ledger.accounts import merchant_accounts, platform_account
from app.ledger.models import AccountKind, EntryReason, LedgerAccount
from app.ledger.service import post_entry
from app.merchants.models import Merchant
from app.merchants.service import create_merchant
from app.settings import Settings
from tests.conftest import AppFactory


def test_events_entries_and_accounts_on_sqlite(
    settings: Settings, tmp_path: Path, app_factory: AppFactory
) -> None:
    database = settings.database.model_copy(update={"url": f"sqlite:///{tmp_path / 'quick.db'}"})
    app = app_factory(settings.model_copy(update={"database": database}))
    with app.app_context():
        upgrade()
        merchant = create_merchant(document={"slug": "lotus-tea", "name": "Lotus Tea"}, actor=CLI)
        db.session.flush()
        event = Event(
            type="order.paid",
            merchant_id=merchant.id,
            subject_type="order",
            subject_id=7,
            dedupe_key="order.paid:7",
            payload={"paid_fen": 1280, "note": "茶"},
        )
        assert (emit(event), emit(event)) == (True, False)
        stored = db.session.query(DomainEvent).one()
        assert stored.payload == {"paid_fen": 1280, "note": "茶"} and stored.created_at.tzinfo is not None

        def fund() -> object:
            return post_entry(
                key="deposit-1",
                reason=EntryReason.FUNDING,
                cause_type="bank",
                cause_id="1",
                lines=[
                    (platform_account(AccountKind.PLATFORM_FUNDING_SOURCE), Money(-5000)),
                    (merchant_accounts(merchant.id).budget, Money(5000)),
                ],
                merchant_id=merchant.id,
            )

        first, replay = fund(), fund()
        db.session.commit()

        assert first is not None and replay is None
        assert merchant_accounts(merchant.id).budget.balance == Money(5000)
        assert db.session.query(LedgerAccount).count() == 2


def _locked_sqlite_app(settings: Settings, tmp_path: Path, app_factory: AppFactory) -> tuple[Flask, Path]:
    path = tmp_path / "busy.db"
    database = settings.database.model_copy(
        update={"url": f"sqlite:///{path}", "sqlite_busy_timeout_ms": 200}
    )
    app = app_factory(settings.model_copy(update={"database": database}))
    with app.app_context():
        upgrade()
        create_merchant(document={"slug": "lotus-tea", "name": "Lotus Tea"}, actor=CLI)
        db.session.commit()
    return app, path


def test_a_writing_transaction_takes_the_write_lock_when_it_begins(
    settings: Settings, tmp_path: Path, app_factory: AppFactory
) -> None:
    app, path = _locked_sqlite_app(settings, tmp_path, app_factory)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process is writing
    try:
        with app.app_context():
            # Even a first statement that only reads waits for (here: times out on) the write lock: the
            # reads a guard makes before its write are inside the serial transaction.
            with pytest.raises(OperationalError, match="database is locked"):
                db.session.scalar(select(Merchant.name).where(Merchant.slug == "lotus-tea"))
            db.session.rollback()
    finally:
        other.rollback()


def test_a_post_that_cannot_get_the_lock_answers_503_and_changes_nothing(
    settings: Settings, tmp_path: Path, app_factory: AppFactory
) -> None:
    app, path = _locked_sqlite_app(settings, tmp_path, app_factory)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        response = app.test_client().post(
            "/api/console/v1/session", json={"email": "owner@lotus.test", "password": "x" * 12}
        )
    finally:
        other.rollback()
    assert response.status_code == 503
    assert (response.json["error"]["code"], response.headers["Retry-After"]) == ("database_busy", "1")


def test_reads_of_a_get_and_after_the_views_commit_do_not_wait_for_a_writer(
    settings: Settings, tmp_path: Path, app_factory: AppFactory
) -> None:
    app, path = _locked_sqlite_app(settings, tmp_path, app_factory)
    other = sqlite3.connect(path, isolation_level=None)
    with app.test_request_context("/api/anything", method="POST"):
        app.preprocess_request()
        merchant = db.session.scalars(select(Merchant).where(Merchant.slug == "lotus-tea")).one()
        merchant.name = "Lotus Tea House"
        commit()  # the view's unit of work is done; building the answer reloads the expired row
        other.execute("BEGIN IMMEDIATE")  # a writer takes the lock before the answer is built
        try:
            # A committed write must not be answered 503 because the answer's read waited for a writer.
            assert merchant.name == "Lotus Tea House"
        finally:
            other.rollback()
    other.execute("BEGIN IMMEDIATE")
    try:
        with app.test_request_context("/api/anything", method="GET"):
            app.preprocess_request()
            assert db.session.scalar(select(Merchant.name)) == "Lotus Tea House"
            db.session.rollback()
    finally:
        other.rollback()
