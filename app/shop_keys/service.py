"""Shop API keys: created and rotated by a merchant's owner, shown once, stored as a SHA-256 digest.

Rotation revokes the old key at once (no grace period): for a zero-downtime switch, create a second
key, deploy it in the shop, then revoke the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from app.audit.service import Actor, record_audit
from app.auth.principals import ShopPrincipal
from app.auth.tokens import new_token, token_digest
from app.core.db import utcnow
from app.core.errors import Conflict, NotFound, Unauthenticated
from app.core.guards import guarded_update
from app.core.tx import commit
from app.extensions import db
from app.merchants.models import Merchant, MerchantStatus
from app.shop_keys.models import ShopApiKey

TOKEN_PREFIX = "hk"  # noqa: S105 - a prefix, not a secret
DISPLAY_PREFIX_LENGTH = 11  # "hk_" and 8 random characters: enough to tell keys apart, useless to guess
# last_used_at is informational: refreshing it at most once a minute avoids a write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: ``key`` is the only time the secret is ever returned."""

    record: ShopApiKey
    key: str

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def display_prefix(self) -> str:
        return self.record.display_prefix

    @property
    def created_at(self) -> datetime:
        return self.record.created_at


@dataclass(frozen=True)
class ShopIdentity:
    merchant: str
    key: str


def _snapshot(record: ShopApiKey) -> dict[str, Any]:
    return {
        "name": record.name,
        "display_prefix": record.display_prefix,
        "revoked": record.revoked_at is not None,
    }


def _issue(*, merchant_id: int, name: str, staff_id: int | None, now: datetime) -> IssuedKey:
    key, digest = new_token(TOKEN_PREFIX)
    record = ShopApiKey(
        merchant_id=merchant_id,
        name=name,
        display_prefix=key[:DISPLAY_PREFIX_LENGTH],
        token_digest=digest,
        created_by_staff_id=staff_id,
        created_at=now,
    )
    db.session.add(record)
    db.session.flush()
    return IssuedKey(record=record, key=key)


def _staff_id(actor: Actor) -> int | None:
    return int(actor.id) if actor.type == "staff" and actor.id else None


def create_shop_key(*, merchant_id: int, name: str, actor: Actor) -> IssuedKey:
    """A new key for the merchant's shop system; the secret is in the result and nowhere else."""
    issued = _issue(merchant_id=merchant_id, name=name.strip(), staff_id=_staff_id(actor), now=utcnow())
    record_audit(
        actor=actor,
        action="shop_key.create",
        target_type="shop_key",
        target_id=issued.id,
        merchant_id=merchant_id,
        after=_snapshot(issued.record),
    )
    return issued


def list_shop_keys(*, merchant_id: int) -> list[ShopApiKey]:
    """Every key of the merchant, newest first, revoked ones included."""
    return list(
        db.session.scalars(
            select(ShopApiKey).where(ShopApiKey.merchant_id == merchant_id).order_by(ShopApiKey.id.desc())
        )
    )


def _revoke(merchant_id: int, key_id: int, now: datetime) -> tuple[ShopApiKey, bool]:
    """The key (of this merchant only) and whether this call revoked it: ``UPDATE … WHERE revoked_at IS
    NULL`` decides, so of two concurrent revocations exactly one is recorded (and audited) as the revoker."""
    revoked = guarded_update(
        ShopApiKey,
        key_id,
        ShopApiKey.merchant_id == merchant_id,
        ShopApiKey.revoked_at.is_(None),
        revoked_at=now,
    )
    record = db.session.scalar(
        select(ShopApiKey)
        .where(ShopApiKey.id == key_id, ShopApiKey.merchant_id == merchant_id)
        .execution_options(populate_existing=True)
    )
    if record is None:
        raise NotFound("no such shop key")
    return record, revoked


def revoke_shop_key(*, merchant_id: int, key_id: int, actor: Actor) -> None:
    """Revoke a key at once; revoking a revoked key changes nothing."""
    record, revoked = _revoke(merchant_id, key_id, utcnow())
    if not revoked:
        return
    record_audit(
        actor=actor,
        action="shop_key.revoke",
        target_type="shop_key",
        target_id=record.id,
        merchant_id=merchant_id,
        before=_snapshot(record) | {"revoked": False},
        after=_snapshot(record),
    )


def rotate_shop_key(*, merchant_id: int, key_id: int, actor: Actor) -> IssuedKey:
    """Revoke a live key and issue its replacement (same name) in one transaction."""
    now = utcnow()
    old, revoked = _revoke(merchant_id, key_id, now)
    if not revoked:
        raise Conflict("this key is already revoked; create a new one instead")
    issued = _issue(merchant_id=merchant_id, name=old.name, staff_id=_staff_id(actor), now=now)
    record_audit(
        actor=actor,
        action="shop_key.rotate",
        target_type="shop_key",
        target_id=old.id,
        merchant_id=merchant_id,
        before=_snapshot(old) | {"id": old.id, "revoked": False},
        after=_snapshot(issued.record) | {"id": issued.id, "replaces": old.id},
    )
    return issued


def authenticate_shop_key(token: str, now: datetime | None = None) -> ShopPrincipal:
    """The merchant behind a live key of an active merchant; anything else is Unauthenticated."""
    now = now or utcnow()
    if not token.startswith(f"{TOKEN_PREFIX}_"):
        raise Unauthenticated("unknown API key")
    row = db.session.execute(
        select(ShopApiKey.id, ShopApiKey.merchant_id, ShopApiKey.revoked_at, Merchant.status)
        .join(Merchant, Merchant.id == ShopApiKey.merchant_id)
        .where(ShopApiKey.token_digest == token_digest(token))
    ).one_or_none()
    if row is None or row.revoked_at is not None:
        raise Unauthenticated("unknown API key")
    if row.status is not MerchantStatus.ACTIVE:
        raise Unauthenticated("this merchant is suspended")
    touched = db.session.execute(
        update(ShopApiKey)
        .where(
            ShopApiKey.id == row.id,
            or_(ShopApiKey.last_used_at.is_(None), ShopApiKey.last_used_at < now - LAST_USED_RESOLUTION),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    if touched.rowcount:  # type: ignore[attr-defined]
        # The guard runs before the view does anything, so this commit carries only the touch; a
        # read-only view would otherwise roll it back.
        commit(final=False)
    return ShopPrincipal(merchant_id=row.merchant_id, key_id=row.id)


def shop_identity(principal: ShopPrincipal) -> ShopIdentity:
    """Which merchant and which key (by display prefix) a shop call authenticated as."""
    row = db.session.execute(
        select(Merchant.slug, ShopApiKey.display_prefix)
        .join(Merchant, Merchant.id == ShopApiKey.merchant_id)
        .where(ShopApiKey.id == principal.key_id)
    ).one()
    return ShopIdentity(merchant=row.slug, key=row.display_prefix)
