"""The pool tests run on the race harness (real commits, a fresh migrated database, the WeChat sandbox,
a Redis of their own) on PostgreSQL: a grab commits before it answers, which a rolled-back test
transaction cannot show."""

from __future__ import annotations

import pytest

from tests.races.conftest import (
    race,
    race_app,
    race_database_url,
    race_instances,
    race_sandbox,
    race_settings,
)

__all__ = ["race", "race_app", "race_database_url", "race_instances", "race_sandbox", "race_settings"]


@pytest.fixture
def engine() -> str:
    return "postgresql"
