"""Personal red packet sweeps: refund what was left unclaimed, lost, or expired unspent."""

from __future__ import annotations

from app.extensions import db
from app.personal.service import refund_due


def refund_personal_packets() -> int:
    """Ask WeChat to refund every personal packet due back to its sender (submissions follow the commit)."""
    started = refund_due()
    db.session.commit()
    return started
