"""The per-test transaction really isolates tests: a commit inside a test is undone afterwards."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit.models import AuditEntry
from app.audit.service import SYSTEM, record_audit


def test_commit_inside_a_test_is_visible_to_the_test(db_session: Session) -> None:
    record_audit(actor=SYSTEM, action="isolation.probe", target_type="test")
    db_session.commit()
    assert db_session.scalar(select(func.count()).select_from(AuditEntry)) == 1


def test_and_gone_for_the_next_one(db_session: Session) -> None:
    assert db_session.scalar(select(func.count()).select_from(AuditEntry)) == 0
