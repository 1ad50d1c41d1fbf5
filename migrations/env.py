"""Alembic environment, driven by Flask-Migrate: ``flask --app wsgi db upgrade`` / ``db migrate``.

Logging is the application's (no fileConfig here, which would silence the app's loggers).
"""

import logging

from alembic import context
from flask import current_app
from sqlalchemy.types import TypeDecorator

import app.models  # noqa: F401  (every model is registered on the metadata)
from app.extensions import db

logger = logging.getLogger("alembic.env")
config = context.config


def _skip_empty_autogenerate(context_, revision, directives):
    if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
        directives[:] = []
        logger.info("No changes in schema detected.")


def _render_item(type_, obj, autogen_context):
    # Migrations must not import app code: app column types are rendered as what they store.
    if type_ == "type" and isinstance(obj, TypeDecorator):
        impl = obj.impl_instance
        autogen_context.imports.add("import sqlalchemy as sa")
        return f"sa.{impl!r}"
    return False


def run_migrations_offline() -> None:
    context.configure(
        url=db.engine.url.render_as_string(hide_password=False),
        target_metadata=db.metadata,
        literal_binds=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    conf_args = dict(current_app.extensions["migrate"].configure_args)
    conf_args.setdefault("process_revision_directives", _skip_empty_autogenerate)
    conf_args.setdefault("compare_type", True)
    conf_args.setdefault("render_item", _render_item)
    with db.engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a table by copying it and dropping the old one; with foreign keys enforced the
            # drop fails wherever rows point at it. The pragma only works outside a transaction (every
            # transaction here begins with BEGIN IMMEDIATE), so it is set on the driver's connection.
            _sqlite_pragma(connection, "PRAGMA foreign_keys=OFF")
        try:
            context.configure(connection=connection, target_metadata=db.metadata, **conf_args)
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:  # the migration itself left a dangling reference: roll it all back
                        raise RuntimeError(f"foreign keys broken by the migration: {broken[:10]}")
        finally:
            if sqlite:
                _sqlite_pragma(connection, "PRAGMA foreign_keys=ON")


def _sqlite_pragma(connection, statement: str) -> None:
    connection.commit()  # no transaction may be open for the pragma to take effect
    connection.connection.driver_connection.execute(statement)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
