"""Banning a consumer: reviewers and owners only, sessions revoked, audited, tenant-scoped."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEntry
from app.auth.principals import Role
from app.consumers.models import ConsumerSession, ConsumerStatus
from app.consumers.sessions import issue_session
from app.merchants.models import Merchant
from tests.console_client import Console
from tests.factories import make_consumer, make_merchant, make_staff


@pytest.fixture
def merchant(db_session: Session) -> Merchant:
    merchant = make_merchant("acme")
    make_staff("reviewer@acme.test", merchant=merchant, role=Role.REVIEWER)
    make_staff("ops@acme.test", merchant=merchant, role=Role.OPERATOR)
    return merchant


def test_reviewer_bans_and_unbans_with_sessions_revoked(
    client: FlaskClient, merchant: Merchant, db_session: Session
) -> None:
    consumer = make_consumer(merchant)
    issue_session(consumer)
    issue_session(consumer)
    reviewer = Console(client, "acme").login("reviewer@acme.test")
    banned = reviewer.post(f"/api/console/v1/consumers/{consumer.id}/ban", json={"reason": "refund fraud"})
    assert banned.status_code == 200, banned.json
    assert banned.json == {"id": consumer.id, "status": "banned", "banned_reason": "refund fraud"}
    sessions = db_session.scalars(
        select(ConsumerSession).where(ConsumerSession.consumer_id == consumer.id)
    ).all()
    assert len(sessions) == 2 and all(s.revoked_at is not None for s in sessions)
    unbanned = reviewer.post(f"/api/console/v1/consumers/{consumer.id}/unban")
    assert unbanned.status_code == 200
    db_session.refresh(consumer)
    assert consumer.status is ConsumerStatus.ACTIVE and consumer.banned_reason is None
    entries = db_session.scalars(
        select(AuditEntry).where(AuditEntry.target_type == "consumer").order_by(AuditEntry.id)
    ).all()
    assert [(e.action, e.before, e.after) for e in entries] == [
        (
            "consumer.ban",
            {"status": "active", "banned_reason": None},
            {"status": "banned", "banned_reason": "refund fraud", "sessions_revoked": 2},
        ),
        (
            "consumer.unban",
            {"status": "banned", "banned_reason": "refund fraud"},
            {"status": "active", "banned_reason": None},
        ),
    ]


def test_operator_cannot_ban(client: FlaskClient, merchant: Merchant) -> None:
    consumer = make_consumer(merchant)
    ops = Console(client, "acme").login("ops@acme.test")
    assert ops.post(f"/api/console/v1/consumers/{consumer.id}/ban", json={"reason": "x"}).status_code == 403


def test_ban_needs_a_reason(client: FlaskClient, merchant: Merchant) -> None:
    consumer = make_consumer(merchant)
    reviewer = Console(client, "acme").login("reviewer@acme.test")
    assert reviewer.post(f"/api/console/v1/consumers/{consumer.id}/ban", json={}).status_code == 422
    assert reviewer.post("/api/console/v1/consumers/999999999/ban", json={"reason": "x"}).status_code == 404
