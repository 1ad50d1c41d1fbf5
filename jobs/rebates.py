"""Rebate sweeps: settlement after the after-sales window, red packet expiry, campaign schedules."""

from __future__ import annotations

from app.campaigns.service import advance_schedules
from app.extensions import db
from app.rebates.service import settle_due
from app.red_packets.service import expire_red_packets


def settle_rebates() -> int:
    """Pending → available for every grant whose order has passed its after-sales window."""
    settled = settle_due()
    db.session.commit()
    return settled


def expire_packets() -> int:
    """Expire unused red packets and release their reservations to the campaign budgets."""
    expired = expire_red_packets()
    db.session.commit()
    return expired


def advance_campaigns() -> int:
    """Start scheduled campaigns and end those past their end time."""
    changed = advance_schedules()
    db.session.commit()
    return changed
