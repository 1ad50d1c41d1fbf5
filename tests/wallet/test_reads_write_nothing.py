"""A wallet read creates no ledger account: reading is not writing (on SQLite a read's transaction that
turns into a write after another commit is refused at once, answered 503 — a quick-start run met it)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.ledger.models import LedgerAccount
from tests.payments.conftest import Shop, shop

__all__ = ["shop"]


def _accounts(db_session: Session) -> int:
    return int(db_session.scalar(select(func.count(LedgerAccount.id))) or 0)


def test_a_new_consumers_wallet_and_timeline_read_create_no_account(shop: Shop, db_session: Session) -> None:
    before = _accounts(db_session)
    wallet = shop.client.get("/api/mp/v1/wallet", headers=shop.consumer_headers)
    assert wallet.status_code == 200, wallet.json
    assert wallet.json == {"available_fen": 0, "debt_fen": 0, "pending_fen": 0, "withdrawing_fen": 0}
    entries = shop.client.get("/api/mp/v1/wallet/entries", headers=shop.consumer_headers)
    assert entries.status_code == 200, entries.json
    assert entries.json["lines"] == []
    assert _accounts(db_session) == before
