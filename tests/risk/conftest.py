"""A merchant with a funded campaign, its people as HTTP callers from chosen IPs and devices."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from app.audit.service import CLI
from app.auth.principals import Role
from app.core.calendar import beijing_day_start
from app.core.clock import dev_clock
from app.core.db import utcnow
from app.ledger.checks import run_checks
from app.risk.service import update_policy
from tests.campaign_setup import start_campaign
from tests.console_client import Console
from tests.factories import make_staff
from tests.invitations.helpers import as_person
from tests.payments.conftest import Shop, shop

__all__ = ["shop"]

# 10% back on every order, and an invite reward (inviter ¥10, invitee ¥5) on an invitee's first order.
REWARDS: dict[str, Any] = {
    "rules": [
        {"id": "ratio", "kind": "ratio", "priority": 5, "stacking": "combinable", "rate_bp": 1000},
        {
            "id": "bring-a-friend",
            "kind": "invite",
            "priority": 10,
            "stacking": "combinable",
            "inviter_fen": 1000,
            "invitee_fen": 500,
        },
    ]
}


@dataclass
class Person:
    """A consumer of the shop calling from one IP with one device token."""

    shop: Shop
    ip: str
    device: str | None

    @property
    def consumer_id(self) -> int:
        return self.shop.consumer_id

    def headers(self) -> dict[str, str]:
        headers = dict(self.shop.consumer_headers)
        if self.device:
            headers["X-Hongli-Device"] = self.device
        return headers

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.shop.client.post(
            path,
            headers=self.headers() | kwargs.pop("headers", {}),
            environ_base={"REMOTE_ADDR": self.ip},
            **kwargs,
        )

    def browse(self, sku: str = "TEA-1", minutes_ago: tuple[int, int] = (3, 1)) -> None:
        now = utcnow()
        events = [
            {
                "type": "view",
                "sku": sku,
                "occurred_at": (now - timedelta(minutes=minutes_ago[0])).isoformat(),
            },
            {
                "type": "cart",
                "sku": sku,
                "occurred_at": (now - timedelta(minutes=minutes_ago[1])).isoformat(),
            },
        ]
        answer = self.post("/api/mp/v1/events", json={"events": events})
        assert answer.status_code == 202, answer.json

    def order(self, out_order_no: str, total_fen: int) -> int:
        """Register (the shop) and pay (this person, from their IP and device) an order; its id."""
        order = self.shop.register(out_order_no, total_fen)
        prepay = self.post(f"/api/mp/v1/orders/{order['id']}/pay", json={})
        assert prepay.status_code == 200, prepay.json
        self.shop.sandbox.post(
            f"/transactions/{self.shop.out_trade_no(order['id'])}/pay", {"mchid": self.shop.merchant.mchid}
        )
        return int(order["id"])


def device_token(client: FlaskClient) -> str:
    answer = client.post("/api/mp/v1/risk/device")
    assert answer.status_code == 201, answer.json
    return str(answer.json["device_token"])


def person(shop: Shop, name: str, *, ip: str, device: str | None) -> Person:
    return Person(as_person(shop, name), ip, device)


def enforce(merchant_id: int, **changes: Any) -> None:
    """Switch the merchant's policy from observe to enforce (with ``changes``), as its owner would."""
    update_policy(merchant_id=merchant_id, changes={"enforce": True, **changes}, actor=CLI)


def ledger_clean() -> None:
    assert [(r.name, r.violations) for r in run_checks() if r.violations] == []


@pytest.fixture
def campaign(shop: Shop, app: Flask, client: FlaskClient, db_session: Session) -> int:
    enforce(shop.merchant.id)
    return start_campaign(shop, app, client, REWARDS, name="Risky rewards")


@pytest.fixture
def reviewer(shop: Shop, client: FlaskClient) -> Console:
    staff = make_staff("risk@acme.test", merchant=shop.merchant, role=Role.REVIEWER)
    return Console(client, shop.merchant.slug).login(staff.email)


@pytest.fixture
def clock(app: Flask, client: FlaskClient) -> Iterator[Any]:
    """Business time, moved by the test (reset afterwards); starts at least 3 hours before a Beijing
    midnight so a test's day windows do not roll over under it."""
    dev = dev_clock(app)
    assert dev is not None
    now = utcnow()
    midnight = beijing_day_start(now) + timedelta(days=1)
    if midnight - now < timedelta(hours=3):
        dev.advance(int((midnight - now).total_seconds()) + 60)
    yield dev
    dev.reset()


def advance(dev: Any, seconds: int) -> datetime:
    dev.advance(seconds)
    return utcnow()
