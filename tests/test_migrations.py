"""The models and the migration head agree, on PostgreSQL and on SQLite."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from flask_migrate import downgrade, upgrade

import app.models  # noqa: F401
from app.extensions import db
from app.health.service import migration_head
from app.settings import Settings
from tests.conftest import AppFactory


def _diff_after_upgrade(application: Flask) -> list[object]:
    with application.app_context():
        upgrade()
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, db.metadata)
            current = context.get_current_revision()
        assert current == migration_head(application)
    return list(diff)


def _with_database(settings: Settings, url: str) -> Settings:
    return settings.model_copy(update={"database": settings.database.model_copy(update={"url": url})})


def test_postgres_schema_matches_models(
    settings: Settings, empty_database_url: str, app_factory: AppFactory
) -> None:
    assert _diff_after_upgrade(app_factory(_with_database(settings, empty_database_url))) == []


def test_sqlite_schema_matches_models(settings: Settings, tmp_path: Path, app_factory: AppFactory) -> None:
    assert _diff_after_upgrade(app_factory(_with_database(settings, f"sqlite:///{tmp_path / 'h.db'}"))) == []


def test_downgrade_to_base_and_back(
    settings: Settings, empty_database_url: str, app_factory: AppFactory
) -> None:
    application = app_factory(_with_database(settings, empty_database_url))
    with application.app_context():
        upgrade()
        downgrade(revision="base")
        with db.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() is None
        upgrade()


def test_every_table_has_a_primary_key() -> None:
    assert [name for name, table in db.metadata.tables.items() if not table.primary_key.columns] == []
