"""Shop API keys: shown once, stored as a digest, rotated and revoked, authenticating /api/shop/v1."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEntry
from app.auth.principals import Role
from app.auth.tokens import token_digest
from app.core.db import utcnow
from app.merchants.models import Merchant, MerchantStatus
from app.shop_keys.models import ShopApiKey
from tests.console_client import Console
from tests.factories import make_merchant, make_staff

KEYS = "/api/console/v1/shop-keys"
WHOAMI = "/api/shop/v1/whoami"


@pytest.fixture
def merchant(db_session: Session) -> Merchant:
    merchant = make_merchant("acme")
    make_staff("owner@acme.test", merchant=merchant, role=Role.OWNER)
    make_staff("viewer@acme.test", merchant=merchant, role=Role.VIEWER)
    make_staff("ops@acme.test", merchant=merchant, role=Role.OPERATOR)
    return merchant


@pytest.fixture
def owner(client: FlaskClient, merchant: Merchant) -> Console:
    return Console(client, "acme").login("owner@acme.test")


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_key_is_shown_once_and_only_its_digest_is_stored(
    owner: Console, client: FlaskClient, db_session: Session, merchant: Merchant
) -> None:
    created = owner.post(KEYS, json={"name": "Shopify bridge"})
    assert created.status_code == 201, created.json
    key = created.json["key"]
    assert key.startswith("hk_") and len(key) > 40
    assert created.json["display_prefix"] == key[:11]
    record = db_session.get_one(ShopApiKey, created.json["id"])
    assert record.token_digest == token_digest(key) and key not in record.token_digest
    listing = owner.get(KEYS)
    assert listing.status_code == 200
    assert key not in listing.get_data(as_text=True)
    assert [k["name"] for k in listing.json["items"]] == ["Shopify bridge"]
    whoami = client.get(WHOAMI, headers=_bearer(key))
    assert whoami.status_code == 200
    assert whoami.json == {"merchant": "acme", "key": key[:11]}
    entry = db_session.scalar(select(AuditEntry).where(AuditEntry.action == "shop_key.create"))
    assert entry is not None and entry.merchant_id == merchant.id
    assert key not in str(entry.after) and entry.after == {
        "name": "Shopify bridge",
        "display_prefix": key[:11],
        "revoked": False,
    }


def test_rotation_revokes_the_old_key_at_once(
    owner: Console, client: FlaskClient, db_session: Session
) -> None:
    old = owner.post(KEYS, json={"name": "erp"}).json
    rotated = owner.post(f"{KEYS}/{old['id']}/rotate")
    assert rotated.status_code == 201
    new = rotated.json
    assert new["id"] != old["id"] and new["name"] == "erp" and new["key"] != old["key"]
    assert client.get(WHOAMI, headers=_bearer(old["key"])).status_code == 401
    assert client.get(WHOAMI, headers=_bearer(new["key"])).status_code == 200
    assert owner.post(f"{KEYS}/{old['id']}/rotate").status_code == 409
    entry = db_session.scalar(select(AuditEntry).where(AuditEntry.action == "shop_key.rotate"))
    assert entry is not None
    assert entry.before["revoked"] is False and entry.after["replaces"] == old["id"]
    assert old["key"] not in str(entry.after) and new["key"] not in str(entry.after)


def test_revoked_key_is_refused(owner: Console, client: FlaskClient) -> None:
    issued = owner.post(KEYS, json={"name": "pos"}).json
    assert owner.delete(f"{KEYS}/{issued['id']}").status_code == 204
    assert owner.delete(f"{KEYS}/{issued['id']}").status_code == 204  # idempotent
    refused = client.get(WHOAMI, headers=_bearer(issued["key"]))
    assert refused.status_code == 401
    assert refused.json["error"]["code"] == "unauthenticated"
    listed = owner.get(KEYS).json["items"][0]
    assert listed["revoked_at"] is not None


def test_unknown_or_malformed_keys_are_refused(client: FlaskClient, merchant: Merchant) -> None:
    for headers in ({}, _bearer("hk_nope"), _bearer("not-a-key"), {"Authorization": "Basic abc"}):
        response = client.get(WHOAMI, headers=headers)
        assert response.status_code == 401
        assert response.json["error"]["code"] == "unauthenticated"


def test_suspended_merchant_keys_stop_working(
    owner: Console, client: FlaskClient, merchant: Merchant, db_session: Session
) -> None:
    key = owner.post(KEYS, json={"name": "pos"}).json["key"]
    merchant.status = MerchantStatus.SUSPENDED
    db_session.flush()
    assert client.get(WHOAMI, headers=_bearer(key)).status_code == 401


def test_last_used_at_is_written_at_most_once_a_minute(
    owner: Console, client: FlaskClient, db_session: Session
) -> None:
    issued = owner.post(KEYS, json={"name": "pos"}).json
    record = db_session.get_one(ShopApiKey, issued["id"])
    assert record.last_used_at is None
    client.get(WHOAMI, headers=_bearer(issued["key"]))
    db_session.refresh(record)
    first = record.last_used_at
    assert first is not None
    client.get(WHOAMI, headers=_bearer(issued["key"]))
    db_session.refresh(record)
    assert record.last_used_at == first
    record.last_used_at = utcnow() - timedelta(minutes=2)
    db_session.flush()
    client.get(WHOAMI, headers=_bearer(issued["key"]))
    db_session.refresh(record)
    assert record.last_used_at is not None and record.last_used_at > first - timedelta(seconds=1)
    assert record.last_used_at > utcnow() - timedelta(seconds=30)


@pytest.mark.parametrize("email", ["viewer@acme.test", "ops@acme.test"])
def test_only_owners_create_rotate_or_revoke(client: FlaskClient, merchant: Merchant, email: str) -> None:
    other = Console(client, "acme").login(email)
    assert other.post(KEYS, json={"name": "x"}).status_code == 403
    assert other.post(f"{KEYS}/1/rotate").status_code == 403
    assert other.delete(f"{KEYS}/1").status_code == 403


def test_viewer_may_list_but_operator_may_not(client: FlaskClient, merchant: Merchant) -> None:
    assert Console(client, "acme").login("viewer@acme.test").get(KEYS).status_code == 200
    assert Console(client, "acme").login("ops@acme.test").get(KEYS).status_code == 403
