"""The merchant's profile in the console: any role reads it (no secrets), owners change policy only."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEntry
from app.auth.principals import Role
from app.core.money import Money
from app.merchants.models import Merchant, PayoutRail
from tests.console_client import Console
from tests.factories import make_merchant, make_staff

PROFILE = "/api/console/v1/merchant"


@pytest.fixture
def merchant(db_session: Session) -> Merchant:
    merchant = make_merchant("acme", "Acme Tea")
    make_staff("owner@acme.test", merchant=merchant, role=Role.OWNER)
    make_staff("finance@acme.test", merchant=merchant, role=Role.FINANCE)
    return merchant


def test_any_role_reads_the_profile_without_secrets(client: FlaskClient, merchant: Merchant) -> None:
    response = Console(client, "acme").login("finance@acme.test").get(PROFILE)
    assert response.status_code == 200
    body = response.json
    assert body["slug"] == "acme" and body["name"] == "Acme Tea"
    assert body["withdrawal_min_fen"] == 100 and body["payout_rail"] == "transfer_bill"
    assert set(body["secrets"].values()) == {False}
    assert "sealed_credentials" not in body


def test_owner_patches_policy_and_unnamed_fields_keep_their_values(
    client: FlaskClient, merchant: Merchant, db_session: Session
) -> None:
    owner = Console(client, "acme").login("owner@acme.test")
    first = owner.patch(PROFILE, json={"payouts": {"rail": "cash_red_packet", "withdrawal_fee_bp": 50}})
    assert first.status_code == 200, first.json
    second = owner.patch(
        PROFILE, json={"payouts": {"withdrawal_min_fen": 200}, "settlement": {"after_sales_window_days": 14}}
    )
    assert second.status_code == 200, second.json
    db_session.refresh(merchant)
    assert merchant.payout_rail is PayoutRail.CASH_RED_PACKET
    assert merchant.withdrawal_fee_bp == 50
    assert merchant.withdrawal_min == Money(200)
    assert merchant.after_sales_window_days == 14
    assert second.json["withdrawal_min_fen"] == 200
    entry = db_session.scalars(
        select(AuditEntry).where(AuditEntry.action == "merchant.update").order_by(AuditEntry.id.desc())
    ).first()
    assert entry is not None and entry.before is not None and entry.after is not None
    assert entry.before["withdrawal_min_fen"] == 100 and entry.after["withdrawal_min_fen"] == 200


def test_a_zero_fen_policy_reads_back_as_zero_and_round_trips(
    client: FlaskClient, merchant: Merchant, db_session: Session
) -> None:
    owner = Console(client, "acme").login("owner@acme.test")
    zero = {"withdrawal_min_fen": 0, "withdrawal_auto_approve_max_fen": 0}
    assert owner.patch(PROFILE, json={"payouts": zero}).status_code == 200

    body = owner.get(PROFILE).json

    # 0 fen is a policy (no minimum; every withdrawal reviewed), not "unset".
    assert (body["withdrawal_min_fen"], body["withdrawal_auto_approve_max_fen"]) == (0, 0)
    again = {key: body[key] for key in zero}
    assert owner.patch(PROFILE, json={"payouts": again}).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Renamed"},
        {"pay": {"apiv3_key": "x" * 32}},
        {"payouts": {"withdrawal_min_fen": 1.5}},
        {"payouts": {"withdrawal_min_fen": "100"}},
        {"payouts": {"rail": "bank"}},
        {"settlement": {"after_sales_window_days": 365}},
    ],
)
def test_only_valid_policy_fields_are_accepted(client: FlaskClient, merchant: Merchant, body: dict) -> None:
    response = Console(client, "acme").login("owner@acme.test").patch(PROFILE, json=body)
    assert response.status_code == 422, response.json


def test_finance_cannot_patch(client: FlaskClient, merchant: Merchant) -> None:
    finance = Console(client, "acme").login("finance@acme.test")
    assert finance.patch(PROFILE, json={"settlement": {"after_sales_window_days": 3}}).status_code == 403
