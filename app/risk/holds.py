"""What settlement asks of risk control: is an order's reward held for review?"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, exists

from app.risk.models import HoldStatus, RiskHold


def not_held(order_id: Any) -> ColumnElement[bool]:
    """True for an order with no reward under review (a held order's consumer grants are not settled)."""
    return ~exists().where(RiskHold.order_id == order_id, RiskHold.status == HoldStatus.HELD)
