"""Record an audit entry in the caller's transaction (it commits or rolls back with the change)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import g, has_request_context, request

from app.audit.models import AuditEntry
from app.core.logging import SECRET_FIELD
from app.extensions import db

REDACTED = "[redacted]"


@dataclass(frozen=True)
class Actor:
    """Who acted: ``type`` is staff, consumer, shop, cli, system, or anonymous (someone not signed in,
    e.g. a failed login: the entry's IP says more)."""

    type: str
    id: str | None = None


CLI = Actor("cli")
SYSTEM = Actor("system")
ANONYMOUS = Actor("anonymous")


def scrub(values: dict[str, Any] | None) -> dict[str, Any] | None:
    """Drop secret values (keep that they changed) from a before/after snapshot."""
    if values is None:
        return None
    return {
        key: (
            REDACTED
            if SECRET_FIELD.search(key) and value
            else scrub(value)
            if isinstance(value, dict)
            else value
        )
        for key, value in values.items()
    }


def record_audit(
    *,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: object | None = None,
    merchant_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an audit entry to the current session; the request's IP, user agent and id are filled in."""
    entry = AuditEntry(
        merchant_id=merchant_id,
        actor_type=actor.type,
        actor_id=actor.id,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        before=scrub(before),
        after=scrub(after),
    )
    if has_request_context():
        entry.ip = request.remote_addr
        entry.user_agent = (request.user_agent.string or "")[:255] or None
        entry.request_id = g.get("request_id")
    db.session.add(entry)
    return entry
