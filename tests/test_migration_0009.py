"""Migration 0009 (structural guards) on a database that already holds money: it runs on SQLite with
rows pointing at the tables it rebuilds, back-fills the limit counters from the rows they count, and
refuses — changing nothing — a database that already breaks a guard it adds."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import Connection, inspect, text

from app.extensions import db
from app.limits.checks import counters_match_rows
from app.settings import Settings
from tests.conftest import AppFactory

# 23:30 Beijing time on Monday 30 November 2026, which is 15:30 UTC.
AT = datetime(2026, 11, 30, 15, 30, tzinfo=UTC)


def _app(settings: Settings, url: str, app_factory: AppFactory) -> Flask:
    database = settings.database.model_copy(update={"url": url})
    return app_factory(settings.model_copy(update={"database": database}))


def _insert(conn: Connection, table: str, **values: Any) -> None:
    """A row with ``values`` and a plain value in every other NOT NULL column without a default."""
    for column in inspect(conn).get_columns(table):
        if column["name"] in values or column["nullable"] or column.get("default") is not None:
            continue
        kind = str(column["type"]).upper()
        if column["name"] == "id":
            continue
        if "BOOL" in kind:
            values[column["name"]] = False
        elif "INT" in kind or "NUMERIC" in kind:
            values[column["name"]] = 0
        elif "DATE" in kind or "TIME" in kind:
            values[column["name"]] = AT
        elif "JSON" in kind:
            values[column["name"]] = "[]"
        else:
            values[column["name"]] = "x"
    names = ", ".join(values)
    placeholders = ", ".join(f":{n}" for n in values)
    conn.execute(text(f"INSERT INTO {table} ({names}) VALUES ({placeholders})"), values)  # noqa: S608


def _seed_at_0008(app: Flask, *, second_payout: bool = False) -> None:
    with app.app_context():
        upgrade(revision="0008")
        with db.engine.begin() as conn:
            _insert(conn, "merchants", id=1, slug="lotus-tea", name="Lotus Tea")
            _insert(conn, "consumers", id=1, merchant_id=1)
            _insert(conn, "campaigns", id=1, merchant_id=1, name="spring")
            _insert(conn, "campaign_rule_versions", id=1, campaign_id=1, version=1, document="{}")
            _insert(conn, "orders", id=1, merchant_id=1, consumer_id=1, out_order_no="SO-1")
            for payout_id in (1, 2) if second_payout else (1,):
                _insert(
                    conn,
                    "payouts",
                    id=payout_id,
                    merchant_id=1,
                    consumer_id=1,
                    source_type="withdrawal",
                    source_id=1,
                    rail="transfer_bill",
                    amount=600,
                    fee=0,
                    status="succeeded",
                    bill_no=f"HLP{payout_id:010d}",
                )
            _insert(
                conn, "withdrawals", id=1, merchant_id=1, consumer_id=1, idempotency_key="k1",
                amount=600, fee=0, status="approved", payout_id=1, created_at=AT,
            )  # fmt: skip
            _insert(
                conn, "withdrawals", id=2, merchant_id=1, consumer_id=1, idempotency_key="k2",
                amount=300, fee=0, status="rejected", created_at=AT,
            )  # fmt: skip
            _insert(
                conn, "rebate_grants", id=1, merchant_id=1, campaign_id=1, rule_version_id=1, rule_id="ten",
                order_id=1, beneficiary="buyer", consumer_id=1, amount=250, status="pending", created_at=AT,
            )  # fmt: skip


def _counters(app: Flask) -> set[tuple[str, int, str, int]]:
    with app.app_context(), db.engine.connect() as conn:
        rows = conn.execute(text("SELECT name, scope_id, window_start, used FROM limit_counters")).all()
    return {(name, scope, str(start)[:10], used) for name, scope, start, used in rows}


@pytest.mark.parametrize("engine", ["postgresql", "sqlite"])
def test_upgrade_backfills_the_counters_of_a_database_with_money(
    engine: str, settings: Settings, empty_database_url: str, tmp_path: Path, app_factory: AppFactory
) -> None:
    url = empty_database_url if engine == "postgresql" else f"sqlite:///{tmp_path / 'old.db'}"
    app = _app(settings, url, app_factory)
    _seed_at_0008(app)

    with app.app_context():
        upgrade()  # on SQLite: withdrawals point at the payouts table the migration rebuilds
        assert counters_match_rows() == []

    # The Beijing day began at 16:00 UTC on 29 November; the ISO week on Monday 30 November, 00:00 in
    # Beijing (29 November UTC); the month on 1 November, 00:00 in Beijing (31 October UTC).
    assert _counters(app) == {
        ("withdrawal.daily_fen", 0, "2026-11-29", 600),  # the rejected 300 fen do not count
        ("campaign.buyer_day_fen", 1, "2026-11-29", 250),
        ("campaign.buyer_week_fen", 1, "2026-11-29", 250),
        ("campaign.buyer_month_fen", 1, "2026-10-31", 250),
    }


def test_upgrade_refuses_a_withdrawal_paid_twice_and_changes_nothing(
    settings: Settings, empty_database_url: str, app_factory: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app = _app(settings, empty_database_url, app_factory)
    _seed_at_0008(app, second_payout=True)

    with app.app_context():
        with pytest.raises(SystemExit):  # flask-migrate logs the error and exits 1
            upgrade()
        assert "cannot add the guard one payout per withdrawal" in caplog.text
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0008"
            assert not inspect(conn).has_table("limit_counters")
