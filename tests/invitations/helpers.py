"""People of one merchant as HTTP callers (the payment tests' shop, signed in as others), and campaigns."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from app.auth.principals import Role
from app.core.db import utcnow
from app.ledger.checks import run_checks
from tests.console_client import Console
from tests.factories import make_staff
from tests.payments.conftest import Shop


def as_person(shop: Shop, user_id: str, nickname: str | None = None) -> Shop:
    """The same shop, seen by another WeChat user who has just logged in to its mini-program."""
    user = shop.sandbox.user(id=user_id, nickname=nickname or user_id.title())
    appid = shop.merchant.mp_appid or ""
    login = shop.client.post(
        "/api/mp/v1/login", json={"appid": appid, "code": shop.sandbox.login_code(user_id, appid)}
    )
    assert login.status_code == 200, login.json
    return replace(
        shop,
        consumer_token=login.json["token"],
        consumer_id=login.json["user"]["id"],
        openid=user["openids"][appid],
    )


def invite_code(person: Shop) -> str:
    response = person.client.get("/api/mp/v1/me/invite", headers=person.consumer_headers)
    assert response.status_code == 200, response.json
    return str(response.json["code"])


def bind(person: Shop, code: str) -> Any:
    return person.client.post(
        "/api/mp/v1/invitations/bind", json={"code": code}, headers=person.consumer_headers
    )


def pending_fen(person: Shop) -> int:
    wallet = person.client.get("/api/mp/v1/wallet", headers=person.consumer_headers)
    assert wallet.status_code == 200, wallet.json
    return int(wallet.json["pending_fen"])


def ledger_clean() -> None:
    assert [result for result in run_checks() if result.violations] == []


def start_campaign(shop: Shop, app: Flask, client: FlaskClient, rules: dict[str, Any]) -> int:
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
            "bank-1",
        ]
    )
    assert deposit.exit_code == 0, deposit.output
    console = Console(client, shop.merchant.slug).login(owner.email)
    now = utcnow()
    created = console.post(
        "/api/console/v1/campaigns",
        json={
            "name": "Bring a friend",
            "starts_at": (now - timedelta(minutes=1)).isoformat(),
            "ends_at": (now + timedelta(days=30)).isoformat(),
            "rules": rules,
        },
    )
    assert created.status_code == 201, created.json
    campaign_id = int(created.json["id"])
    funded = console.post(
        f"/api/console/v1/campaigns/{campaign_id}/fund",
        json={"amount_fen": 100000, "source": "merchant", "idempotency_key": "fund-0001"},
    )
    assert funded.status_code == 200, funded.json
    active = console.post(f"/api/console/v1/campaigns/{campaign_id}/status", json={"to": "active"})
    assert active.json["status"] == "active", active.json
    return campaign_id
