"""Whether a merchant's WeChat Pay account has cash red packets (``sendredpack`` / ``sendgroupredpack``).

Only some accounts have them (90 days on WeChat Pay, 30 of normal trading; since 2023-09 new applicants get
the narrower 商家红包), so it is never assumed: WeChat's own answer to a send decides. ``NO_AUTH`` or
``PRODUCT_AUTHORITY_UNOPEN`` (or a "not opened" scene) switches the product off for the merchant, with the
reason, and payouts that would have used it go to the default rail (商家转账) instead. A merchant who opens
it later is not stuck: WeChat is asked again a week after its refusal (one send tries the product; a
refusal falls back as before and switches it off for another week), or at once when staff say so
(:func:`ask_again`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app.audit.service import Actor
from app.core.db import utcnow
from app.core.refusals import forget_refusal, refused
from app.extensions import db
from app.payouts.models import PayoutCapability, PayoutProduct

# §5.2 NO_AUTH; PRODUCT_AUTHORITY_UNOPEN: the product not opened on the account (wechat-products-2026).
PRODUCT_OFF_CODES = frozenset({"NO_AUTH", "NOAUTH", "PRODUCT_AUTHORITY_UNOPEN"})
_NOT_OPENED = "未开通"  # "该场景未开通" / "产品未开通": the scene or the product is not opened


def means_product_off(code: str | None, message: str | None = None) -> bool:
    """WeChat's answer to a send says the account lacks cash red packets (not a fault of this one send)."""
    return (code or "").upper() in PRODUCT_OFF_CODES or _NOT_OPENED in (message or "")


def capability(
    merchant_id: int, product: PayoutProduct = PayoutProduct.CASH_RED_PACKET
) -> PayoutCapability | None:
    return db.session.scalar(
        select(PayoutCapability).where(
            PayoutCapability.merchant_id == merchant_id, PayoutCapability.product == product
        )
    )


def cash_red_packets_off(merchant_id: int, now: datetime | None = None) -> bool:
    """True while WeChat's refusal of a red packet of this merchant, for want of the product, stands
    (less than a week old and not asked again: app.core.refusals)."""
    return refused(capability(merchant_id), now)


def ask_again(merchant_id: int, product: PayoutProduct, *, actor: Actor) -> None:
    """Staff say the product is open now: the next send asks WeChat (audited; 409
    ``capability_not_off`` when WeChat has not refused it)."""
    forget_refusal(
        PayoutCapability,
        capability(merchant_id, product),
        product=product.value,
        merchant_id=merchant_id,
        actor=actor,
        action="payouts.capability.ask_again",
        target_type="payout_capability",
    )


def record_product_off(merchant_id: int, *, code: str | None, message: str | None) -> None:
    """Switch cash red packets off for ``merchant_id`` with WeChat's reason (idempotent, race-safe: the
    unique ``(merchant, product)`` row is inserted once, a loser updates it)."""
    reason = f"WeChat Pay answered {code or 'a refusal'}: cash red packets are not enabled for this account"
    if message:
        reason = f"{reason} ({message})"
    values: dict[str, Any] = {
        "enabled": False,
        "reason": reason[:255],
        "wechat_code": (code or "")[:64] or None,
        "detected_at": utcnow(),
    }
    try:
        with db.session.begin_nested():
            db.session.add(
                PayoutCapability(merchant_id=merchant_id, product=PayoutProduct.CASH_RED_PACKET, **values)
            )
    except IntegrityError:
        db.session.execute(
            update(PayoutCapability)
            .where(
                PayoutCapability.merchant_id == merchant_id,
                PayoutCapability.product == PayoutProduct.CASH_RED_PACKET,
            )
            .values(values)
            .execution_options(synchronize_session=False)
        )


def capabilities(merchant_id: int) -> list[dict[str, Any]]:
    """Each payout product with what WeChat last said; ``enabled`` None when WeChat never refused it."""
    out = []
    for product in PayoutProduct:
        found = capability(merchant_id, product)
        out.append(
            {
                "product": product.value,
                "enabled": None if found is None else found.enabled,
                "reason": None if found is None else found.reason,
                "wechat_code": None if found is None else found.wechat_code,
                "detected_at": None if found is None else found.detected_at,
            }
        )
    return out
