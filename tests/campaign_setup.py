"""Launch a campaign the way a merchant does: deposit (CLI), create, fund and activate (console API)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from app.auth.principals import Role
from app.core.db import utcnow
from tests.console_client import Console
from tests.factories import make_staff
from tests.payments.conftest import Shop


def start_campaign(
    shop: Shop,
    app: Flask,
    client: FlaskClient,
    rules: dict[str, Any],
    *,
    name: str = "Campaign",
    deposit_key: str = "bank-1",
    pays_out_as_cash: bool = False,
) -> int:
    """An active campaign holding ``rules``, funded with ¥1,000 from a ¥2,000 marketing deposit."""
    owner = make_staff(merchant=shop.merchant, role=Role.OWNER)
    deposit = app.test_cli_runner().invoke(
        args=[
            "budgets",
            "deposit",
            "--merchant",
            shop.merchant.slug,
            "--amount-fen",
            "200000",
            "--key",
            deposit_key,
        ]
    )
    assert deposit.exit_code == 0, deposit.output
    console = Console(client, shop.merchant.slug).login(owner.email)
    now = utcnow()
    created = console.post(
        "/api/console/v1/campaigns",
        json={
            "name": name,
            "starts_at": (now - timedelta(minutes=1)).isoformat(),
            "ends_at": (now + timedelta(days=30)).isoformat(),
            "rules": rules,
            "pays_out_as_cash": pays_out_as_cash,
        },
    )
    assert created.status_code == 201, created.json
    campaign_id = int(created.json["id"])
    funded = console.post(
        f"/api/console/v1/campaigns/{campaign_id}/fund",
        json={"amount_fen": 100000, "source": "merchant", "idempotency_key": f"fund-{deposit_key}"},
    )
    assert funded.status_code == 200, funded.json
    assert funded.json["budget_remaining_fen"] == 100000
    active = console.post(f"/api/console/v1/campaigns/{campaign_id}/status", json={"to": "active"})
    assert active.json["status"] == "active", active.json
    return campaign_id
