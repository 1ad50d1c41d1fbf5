"""The quick start's SQLite runs the same hand-built statements as PostgreSQL: events emitted once,
ledger entries posted once (a replay changes nothing), accounts created once."""

from __future__ import annotations

from pathlib import Path

from flask_migrate import upgrade

from app.audit.service import CLI
from app.core.money import Money
from app.events.bus import Event, emit
from app.events.models import DomainEvent
from app.extensions import db
from app.ledger.accounts import merchant_accounts, platform_account
from app.ledger.models import AccountKind, EntryReason, LedgerAccount
from app.ledger.service import post_entry
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
