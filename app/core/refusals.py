"""WeChat's refusal of a product a merchant's account lacks (cash red packets, vouchers, merchant
coupons), as each capability table records it (``enabled = false``, its reason, code and time): how long
it stands before WeChat is asked again, and staff forgetting it at once when the merchant opened the
product. One mechanism for every such table (app.payouts.capabilities, app.coupons.service)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete

from app.audit.service import Actor, record_audit
from app.core.db import utcnow
from app.core.errors import Conflict
from app.extensions import db

STANDS = timedelta(days=7)  # how long a refusal stands before the next call asks WeChat again


class CapabilityNotOff(Conflict):
    code = "capability_not_off"


class Capability(Protocol):
    id: Any
    enabled: bool
    reason: str | None
    wechat_code: str | None
    detected_at: datetime


def refused(found: Capability | None, now: datetime | None = None) -> bool:
    """WeChat's refusal stands: recorded, and less than STANDS old."""
    return found is not None and not found.enabled and found.detected_at > (now or utcnow()) - STANDS


def forget_refusal(
    model: Any,
    found: Capability | None,
    *,
    product: str,
    merchant_id: int,
    actor: Actor,
    action: str,
    target_type: str,
) -> None:
    """Delete the refusal row (the next call asks WeChat) by a conditional DELETE — still a refusal, so
    two staff at once audit it once — with the refusal forgotten in the audit entry. 409
    ``capability_not_off`` when WeChat has not refused the product."""
    if found is None or found.enabled:
        raise CapabilityNotOff(
            "WeChat has not refused this product for this merchant", details={"product": product}
        )
    before = {
        "reason": found.reason,
        "wechat_code": found.wechat_code,
        "detected_at": found.detected_at.isoformat(),
    }
    deleted = db.session.execute(
        delete(model)
        .where(model.id == found.id, model.enabled.is_(False))
        .execution_options(synchronize_session=False)
    )
    if deleted.rowcount:  # type: ignore[attr-defined]
        record_audit(
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=product,
            merchant_id=merchant_id,
            before=before,
        )
