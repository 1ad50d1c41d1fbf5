"""Suspending a merchant stops its new business — consumers' tokens, shop keys, the console's changes —
and is audited; resuming restores it. (WeChat's callbacks for a suspended merchant are still applied:
see tests/payments/test_merchant_snapshots.py.)"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEntry
from app.audit.service import CLI
from app.auth.principals import Role
from app.consumers.sessions import issue_session
from app.core.db import utcnow
from app.merchants.models import Merchant, MerchantStatus
from app.merchants.service import create_merchant
from app.shop_keys.service import create_shop_key
from tests.console_client import Console
from tests.factories import make_consumer, make_merchant, make_staff

PROFILE = "/api/console/v1/merchant"
SLUG = "plum-dumplings"


@pytest.fixture
def merchant(db_session: Session) -> Merchant:
    merchant = make_merchant("plum-dumplings", "Plum Dumplings")
    make_staff("owner@plum.test", merchant=merchant, role=Role.OWNER)
    return merchant


def _status(db_session: Session) -> MerchantStatus | None:
    return db_session.scalar(select(Merchant.status).where(Merchant.slug == SLUG))


def _merchants(app: Flask, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=["merchants", *args])
    assert result.exit_code == 0, result.output
    return result.output


def _refused_until_resumed(
    app: Flask, slug: str, probe: Callable[[], int], *, refused: int, resumed: int
) -> None:
    """Suspend ``slug``: ``probe()`` answers ``refused``; resume it: ``resumed``."""
    _merchants(app, "suspend", slug, "--reason", "chargeback review")
    assert probe() == refused
    _merchants(app, "resume", slug, "--reason", "review cleared")
    assert probe() == resumed


def test_suspend_and_resume_are_audited_with_their_reason(
    app: Flask, merchant: Merchant, db_session: Session
) -> None:
    assert "is suspended" in _merchants(app, "suspend", "plum-dumplings", "--reason", "chargeback review")
    assert _status(db_session) is MerchantStatus.SUSPENDED
    assert "(unchanged)" in _merchants(app, "suspend", "plum-dumplings", "--reason", "again")

    assert "is active" in _merchants(app, "resume", "plum-dumplings", "--reason", "review cleared")
    assert _status(db_session) is MerchantStatus.ACTIVE
    entries = db_session.scalars(
        select(AuditEntry)
        .where(
            AuditEntry.merchant_id == merchant.id,
            AuditEntry.action.in_(["merchant.suspend", "merchant.resume"]),
        )
        .order_by(AuditEntry.id)
    ).all()
    assert [(e.action, (e.after or {})["reason"]) for e in entries] == [
        ("merchant.suspend", "chargeback review"),
        ("merchant.resume", "review cleared"),
    ]


def test_a_reason_is_required(app: Flask, merchant: Merchant, db_session: Session) -> None:
    result = app.test_cli_runner().invoke(args=["merchants", "suspend", "plum-dumplings", "--reason", " "])
    assert result.exit_code != 0
    assert "reason" in result.output
    assert _status(db_session) is MerchantStatus.ACTIVE


def test_the_console_of_a_suspended_merchant_reads_and_winds_down_only(
    app: Flask, client: FlaskClient, merchant: Merchant, db_session: Session
) -> None:
    owner = Console(client, SLUG).login("owner@plum.test")
    consumer = make_consumer(merchant)
    _merchants(app, "suspend", SLUG, "--reason", "chargeback review")

    assert owner.get(PROFILE).status_code == 200
    refused = owner.patch(PROFILE, json={"payouts": {"withdrawal_fee_bp": 50}})
    assert refused.status_code == 403
    assert refused.json["error"]["details"] == {"merchant_status": "suspended"}
    assert owner.post("/api/console/v1/shop-keys", json={"name": "new till"}).status_code == 403
    assert db_session.scalar(select(Merchant.withdrawal_fee_bp).where(Merchant.slug == SLUG)) == 0
    # Winding down is still possible: e.g. banning an abusive consumer.
    banned = owner.post(f"/api/console/v1/consumers/{consumer.id}/ban", json={"reason": "refund fraud"})
    assert banned.status_code == 200, banned.json

    _merchants(app, "resume", SLUG, "--reason", "review cleared")
    assert owner.patch(PROFILE, json={"payouts": {"withdrawal_fee_bp": 50}}).status_code == 200


def test_a_suspended_merchants_shop_key_is_refused_until_resumed(
    app: Flask, client: FlaskClient, merchant: Merchant
) -> None:
    key = create_shop_key(merchant_id=merchant.id, name="shop", actor=CLI).key
    headers = {"Authorization": f"Bearer {key}"}

    def probe() -> int:
        return client.get("/api/shop/v1/orders/SO-1", headers=headers).status_code

    _refused_until_resumed(app, SLUG, probe, refused=401, resumed=404)  # 404: the key works again


def test_a_suspended_merchants_consumers_are_signed_out_until_resumed(
    app: Flask, client: FlaskClient, db_session: Session
) -> None:
    merchant = create_merchant(
        document={
            "slug": "pear-noodles",
            "name": "Pear Noodles",
            "miniprogram": {"appid": "wx5151515151515151", "secret": "mp-secret-0123456789abcdef"},
        },
        actor=CLI,
    )
    db_session.flush()
    token, _ = issue_session(make_consumer(merchant))
    headers = {"Authorization": f"Bearer {token}", "X-WX-AppId": "wx5151515151515151"}

    def probe() -> int:
        return client.get("/api/mp/v1/wallet", headers=headers).status_code

    assert probe() == 200
    _refused_until_resumed(app, "pear-noodles", probe, refused=401, resumed=200)


def test_a_suspended_merchants_campaigns_can_be_paused_but_not_restarted(
    app: Flask, client: FlaskClient, db_session: Session
) -> None:
    merchant = make_merchant("fig-bakery", "Fig Bakery")
    operator = make_staff("op@fig.test", merchant=merchant, role=Role.OPERATOR)
    console = Console(client, "fig-bakery").login(operator.email)
    now = utcnow()
    ratio = {"id": "r", "kind": "ratio", "priority": 5, "stacking": "combinable", "rate_bp": 100}
    created = console.post(
        "/api/console/v1/campaigns",
        json={
            "name": "Winter",
            "starts_at": (now - timedelta(minutes=1)).isoformat(),
            "ends_at": (now + timedelta(days=30)).isoformat(),
            "rules": {"rules": [ratio]},
        },
    )
    assert created.status_code == 201, created.json
    campaign = created.json["id"]
    status = f"/api/console/v1/campaigns/{campaign}/status"
    assert console.post(status, json={"to": "active"}).status_code == 200
    _merchants(app, "suspend", "fig-bakery", "--reason", "chargeback review")

    paused = console.post(status, json={"to": "paused"})
    restarted = console.post(status, json={"to": "active"})

    assert paused.status_code == 200, paused.json
    assert restarted.status_code == 403
    assert restarted.json["error"]["details"] == {"merchant_status": "suspended"}
    assert console.get(f"/api/console/v1/campaigns/{campaign}").json["status"] == "paused"
