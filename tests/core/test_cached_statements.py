"""The statements every paid order and ledger entry runs are compiled once, not per call.

SQLAlchemy compiles a statement afresh whenever it has no cache key (its ON CONFLICT constructs never
do); these are built with ``insert_unless_exists`` instead and must stay cacheable.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.events.bus import _INSERT_ONCE
from app.gateway.log import _INSERT as GATEWAY_LOG_INSERT
from app.ledger.accounts import _CREATE_UNLESS_EXISTS
from app.ledger.service import _ENTRY_UNLESS_POSTED
from app.payments.service import _LOCK_PAYMENT, _MARK_ATTEMPT_PAID, _MARK_ORDER_PAID


@pytest.mark.parametrize(
    "statement",
    [
        _INSERT_ONCE,
        _ENTRY_UNLESS_POSTED,
        _CREATE_UNLESS_EXISTS,
        GATEWAY_LOG_INSERT,
        _LOCK_PAYMENT,
        _MARK_ATTEMPT_PAID,
        _MARK_ORDER_PAID,
    ],
)
def test_hot_path_statements_have_a_cache_key(statement: Any) -> None:
    assert statement._generate_cache_key() is not None
