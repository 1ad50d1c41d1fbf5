"""A merchant with a funded two-way campaign, its console, and helpers to run the coupon jobs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from app.auth.principals import Role
from app.core.db import utcnow
from tests.campaign_setup import start_campaign
from tests.console_client import Console
from tests.factories import make_staff
from tests.payments.conftest import Shop, shop
from tests.worker import ledger_clean, run_jobs

__all__ = ["ledger_clean", "run_jobs", "shop"]

TWO_WAY = {
    "rules": [
        {
            "id": "two-way",
            "kind": "two_way",
            "priority": 10,
            "stacking": "combinable",
            "trigger_min_order_fen": 20000,
            "packet_value_fen": 1000,
            "packet_min_spend_fen": 5000,
            "packet_valid_days": 30,
            "issuer_rate_bp": 1000,
            "buyer_rate_bp": 500,
            "max_order_fen": 100000,
        }
    ]
}
WORST_CASE = 1000 + 10000 + 5000  # face value + 10% and 5% of the ¥1,000 max order


@dataclass
class Marketing:
    shop: Shop
    console: Console
    campaign_id: int

    def stock(self, **body: Any) -> dict[str, Any]:
        now = utcnow()
        fields = {
            "campaign_id": self.campaign_id,
            "name": "Welcome ¥10",
            "valid_from": (now - timedelta(minutes=1)).isoformat(),
            "valid_until": (now + timedelta(days=30)).isoformat(),
            "max_coupons": 10,
            "channels": ["follow", "after_payment", "push"],
            "rule_id": "two-way",
        } | body
        made = self.console.post("/api/console/v1/coupon-stocks", json=fields)
        assert made.status_code == 201, made.json
        return dict(made.json)


@pytest.fixture
def marketing(shop: Shop, app: Flask, client: FlaskClient, db_session: Session) -> Marketing:
    campaign_id = start_campaign(shop, app, client, TWO_WAY, name="Coupons")
    owner = make_staff(merchant=shop.merchant, role=Role.OWNER)
    return Marketing(shop, Console(client, shop.merchant.slug).login(owner.email), campaign_id)
