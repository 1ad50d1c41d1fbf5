"""Merchants as WeChat's callbacks need them, remembered per process for a few seconds.

A WeChat Pay notification needs its merchant's verification keys and API v3 key before anything else.
Selecting the row and unsealing its credentials on every callback was a large part of a callback's
cost, so a snapshot (public identifiers, verification material, opened secrets) is kept for
``payments.merchant_cache_seconds``. Freshness:

- a change made through this process (an ORM update of the row) forgets the snapshot at once, and
  again when it commits;
- a callback that fails verification against a snapshot older than a second reloads it and tries
  again, so a rotated certificate, public key or API v3 key is picked up on first use;
- any other change made elsewhere — a certificate or key removed, identifiers changed — is seen within
  the interval (0 turns the cache off).

Callbacks are served whatever the merchant's status: a suspended merchant's customers may still have
paid, or be refunded, and WeChat's word about money already in motion is recorded either way.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from flask import Flask, current_app
from sqlalchemy import event, select
from sqlalchemy.orm import Session, object_session

from app.extensions import db
from app.merchants.credentials import MerchantSecrets, open_secrets
from app.merchants.models import Merchant
from app.settings import Settings

_EXTENSION = "hongli.merchant_snapshots"
_CHANGED = "hongli.merchants_changed"  # slugs updated in a session, forgotten again at its commit
# A snapshot younger than this is not reloaded after a failed verification: forged callbacks cannot
# turn the cache into a database query each.
_RELOAD_AFTER_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class MerchantSnapshot:
    """What a callback needs of a merchant. Attribute names match :class:`Merchant`, so code that reads
    identifiers and verification material takes either."""

    id: int
    slug: str
    mchid: str | None
    mp_appid: str | None
    oa_appid: str | None
    wechatpay_public_key_id: str | None
    wechatpay_public_key_pem: str | None
    platform_certificates_pem: tuple[str, ...]
    updated_at: datetime
    secrets: MerchantSecrets
    loaded_at: float

    @property
    def reloadable(self) -> bool:
        return time.monotonic() - self.loaded_at >= _RELOAD_AFTER_SECONDS


class _Snapshots:
    def __init__(self) -> None:
        self.by_slug: dict[str, MerchantSnapshot] = {}
        self.lock = threading.Lock()


def _store(app: Flask) -> _Snapshots:
    store: _Snapshots = app.extensions[_EXTENSION]
    return store


def merchant_snapshot(slug: str, *, reload: bool = False) -> MerchantSnapshot | None:
    """The snapshot of merchant ``slug`` (None if there is none); ``reload`` reads the row again."""
    settings: Settings = current_app.extensions["hongli.settings"]
    ttl = settings.payments.merchant_cache_seconds
    store = _store(current_app)
    if not reload and ttl:
        with store.lock:
            cached = store.by_slug.get(slug)
        if cached is not None and time.monotonic() - cached.loaded_at < ttl:
            return cached
    # Always the row as stored now, even if this session holds an older copy of it.
    merchant = db.session.scalar(
        select(Merchant).where(Merchant.slug == slug).execution_options(populate_existing=True)
    )
    if merchant is None:
        with store.lock:
            store.by_slug.pop(slug, None)
        return None
    snapshot = MerchantSnapshot(
        id=merchant.id,
        slug=merchant.slug,
        mchid=merchant.mchid,
        mp_appid=merchant.mp_appid,
        oa_appid=merchant.oa_appid,
        wechatpay_public_key_id=merchant.wechatpay_public_key_id,
        wechatpay_public_key_pem=merchant.wechatpay_public_key_pem,
        platform_certificates_pem=tuple(merchant.platform_certificates_pem or ()),
        updated_at=merchant.updated_at,
        secrets=open_secrets(merchant.id, merchant.sealed_credentials),
        loaded_at=time.monotonic(),
    )
    if ttl:
        with store.lock:
            store.by_slug[slug] = snapshot
    return snapshot


def forget_merchants(app: Flask) -> None:
    """Drop every snapshot (tests, after rolling back the rows they were taken from)."""
    store = _store(app)
    with store.lock:
        store.by_slug.clear()


def init_app(app: Flask) -> None:
    app.extensions[_EXTENSION] = _Snapshots()


def _forget(slugs: set[str]) -> None:
    try:
        store = _store(current_app)
    except (RuntimeError, KeyError):  # outside an app (or one without snapshots): nothing cached here
        return
    with store.lock:
        for slug in slugs:
            store.by_slug.pop(slug, None)


@event.listens_for(Merchant, "after_update")
def _forget_updated(_mapper: object, _connection: object, merchant: Merchant) -> None:
    # Forget now and again once committed: a callback served between the flush and the commit may have
    # cached the row as it was. Only this process hears of it; the others wait out the interval.
    _forget({merchant.slug})
    session = object_session(merchant)
    if session is not None:
        session.info.setdefault(_CHANGED, set()).add(merchant.slug)


@event.listens_for(Session, "after_commit")
def _forget_committed(session: Session) -> None:
    changed: set[str] | None = session.info.pop(_CHANGED, None)
    if changed:
        _forget(changed)


@event.listens_for(Session, "after_soft_rollback")
def _drop_changed(session: Session, _previous: object) -> None:
    session.info.pop(_CHANGED, None)
