"""The sandbox shop of the payment tests, and a seed two-way campaign set up through the console API."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit.models import AuditEntry
from app.auth.principals import Role
from app.core.db import utcnow
from app.ledger.models import JournalEntry, LedgerAccount, Posting
from app.rebates.models import RebateGrant
from app.red_packets.models import RedPacket
from tests.console_client import Console
from tests.factories import make_staff
from tests.payments.conftest import Shop, shop

__all__ = ["shop"]

SEED_TWO_WAY: dict[str, Any] = {
    "id": "two-way",
    "kind": "two_way",
    "priority": 100,
    "stacking": "combinable",
    "trigger_min_order_fen": 20000,
    "packet_value_fen": 1000,
    "packet_min_spend_fen": 5000,
    "packet_valid_days": 30,
    "issuer_rate_bp": 1000,
    "buyer_rate_bp": 500,
    "max_order_fen": 100000,
}
SEED_RULES: dict[str, Any] = {"rules": [SEED_TWO_WAY]}
SEED_WORST_CASE = 1000 + 10000 + 5000  # face value + 10% and 5% of the ¥1000 max order


@dataclass
class Consoles:
    """Console sessions at the shop's merchant, one per role used here."""

    owner: Console
    operator: Console
    viewer: Console


@pytest.fixture
def consoles(shop: Shop, app: Flask, client: FlaskClient) -> Consoles:
    def session(role: Role) -> Console:
        staff = make_staff(merchant=shop.merchant, role=role)
        return Console(app.test_client(), shop.merchant.slug).login(staff.email)

    return Consoles(session(Role.OWNER), session(Role.OPERATOR), session(Role.VIEWER))


MakeCampaign = Callable[..., int]


@pytest.fixture
def make_campaign(shop: Shop, app: Flask, consoles: Consoles) -> MakeCampaign:
    """``make_campaign(rules=…, fund_fen=…, activate=…)``: a campaign created, funded and activated by
    the owner through the console API, the money deposited through the CLI first."""
    deposits = iter(range(1, 1000))

    def make(rules: dict[str, Any] = SEED_RULES, fund_fen: int = 100000, activate: bool = True) -> int:
        console = consoles.owner
        now = utcnow()
        created = console.post(
            "/api/console/v1/campaigns",
            json={
                "name": "Two-way launch",
                "starts_at": (now - timedelta(minutes=1)).isoformat(),
                "ends_at": (now + timedelta(days=60)).isoformat(),
                "rules": rules,
            },
        )
        assert created.status_code == 201, created.json
        campaign_id = int(created.json["id"])
        if fund_fen:
            number = next(deposits)
            deposit = app.test_cli_runner().invoke(
                args=[
                    "budgets",
                    "deposit",
                    "--merchant",
                    shop.merchant.slug,
                    "--amount-fen",
                    str(fund_fen),
                    "--key",
                    f"bank-{campaign_id}-{number}",
                ]
            )
            assert deposit.exit_code == 0, deposit.output
            funded = console.post(
                f"/api/console/v1/campaigns/{campaign_id}/fund",
                json={
                    "amount_fen": fund_fen,
                    "source": "merchant",
                    "idempotency_key": f"fund-{campaign_id:06d}",
                },
            )
            assert funded.status_code == 200, funded.json
        if activate:
            active = console.post(f"/api/console/v1/campaigns/{campaign_id}/status", json={"to": "active"})
            assert active.json["status"] == "active", active.json
        return campaign_id

    return make


def row_counts(session: Session) -> dict[str, int]:
    """How many rows the tables that money and grants live in hold (to prove a call wrote nothing)."""
    return {
        model.__name__: session.scalar(select(func.count()).select_from(model)) or 0
        for model in (JournalEntry, Posting, LedgerAccount, RebateGrant, RedPacket, AuditEntry)
    }
