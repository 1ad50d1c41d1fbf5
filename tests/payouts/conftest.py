"""A sandbox merchant whose consumer has available money, helpers to withdraw and to run payout passes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from werkzeug.test import TestResponse

from app.consumers.models import AppKind, WeChatIdentity
from app.core.db import utcnow
from app.core.money import Money
from app.extensions import db
from app.ledger.accounts import consumer_accounts, platform_account
from app.ledger.checks import run_checks
from app.ledger.models import AccountKind, EntryReason
from app.ledger.service import post_entry
from app.merchants.credentials import seal_secrets
from app.merchants.models import PayoutRail
from app.merchants.service import merchant_secrets
from app.payouts.models import Payout
from jobs.payouts import process_payout
from tests.payments.conftest import Shop, committed, shop

__all__ = ["Payee", "committed", "fund_available", "ledger_clean", "payee", "shop"]


def fund_available(merchant_id: int, consumer_id: int, fen: int, key: str) -> None:
    """Put ``fen`` straight into the consumer's available bucket (as settled rebates would)."""
    post_entry(
        key=key,
        reason=EntryReason.FUNDING,
        cause_type="test",
        cause_id=key,
        lines=[
            (platform_account(AccountKind.PLATFORM_FUNDING_SOURCE), Money(-fen)),
            (consumer_accounts(merchant_id, consumer_id).available, Money(fen)),
        ],
        merchant_id=merchant_id,
    )


def ledger_clean() -> None:
    assert [r for r in run_checks() if r.violations] == []


@dataclass
class Payee:
    shop: Shop

    @property
    def client(self) -> Any:
        return self.shop.client

    @property
    def mchid(self) -> str:
        return self.shop.merchant.mchid or ""

    def use_rail(self, rail: PayoutRail) -> None:
        self.shop.merchant.payout_rail = rail
        db.session.flush()

    def withdraw(self, amount_fen: int, key: str) -> TestResponse:
        return self.client.post(
            "/api/mp/v1/withdrawals",
            json={"amount_fen": amount_fen, "idempotency_key": key},
            headers=self.shop.consumer_headers,
        )

    def withdrawal(self, withdrawal_id: int) -> dict[str, Any]:
        response = self.client.get(
            f"/api/mp/v1/withdrawals/{withdrawal_id}", headers=self.shop.consumer_headers
        )
        assert response.status_code == 200, response.json
        return response.json  # type: ignore[no-any-return]

    def wallet(self) -> dict[str, Any]:
        response = self.client.get("/api/mp/v1/wallet", headers=self.shop.consumer_headers)
        assert response.status_code == 200, response.json
        return response.json  # type: ignore[no-any-return]

    def payout_of(self, withdrawal_id: int) -> Payout:
        from app.withdrawals.models import Withdrawal

        withdrawal = db.session.get(Withdrawal, withdrawal_id)
        assert withdrawal is not None and withdrawal.payout_id is not None
        payout = db.session.get(Payout, withdrawal.payout_id)
        assert payout is not None
        db.session.refresh(payout)
        return payout

    def run(self, payout: Payout, *, due_now: bool = True) -> str:
        """One payout pass, as the worker would run it (its next attempt made due first)."""
        if due_now:
            payout.next_attempt_at = utcnow()
            db.session.commit()
        result = process_payout(payout.id)
        db.session.refresh(payout)
        return result

    def sandbox_payouts(self) -> list[dict[str, Any]]:
        return self.shop.sandbox.get(f"/payouts?mchid={self.mchid}")["payouts"]  # type: ignore[no-any-return]

    def fault(self, **body: Any) -> None:
        self.shop.sandbox.post("/faults", {"mchid": self.mchid, **body})


@pytest.fixture
def payee(shop: Shop) -> Payee:
    """``shop``'s consumer with ¥300 available, an official-account identity (for red packets) and the
    merchant's API client certificate (v2 mutual TLS); the merchant pays by transfer bill by default."""
    merchant = shop.merchant
    view = shop.sandbox.get(f"/merchants/{merchant.mchid}")
    secrets = merchant_secrets(merchant)
    merchant.sealed_credentials = seal_secrets(
        merchant.id,
        secrets.merged(
            {
                "client_cert_pem": view["merchant_certificate_pem"],
                "client_key_pem": secrets.pay_private_key_pem,
            }
        ),
    )
    user = shop.sandbox.get("/users/alice")
    db.session.add(
        WeChatIdentity(
            merchant_id=merchant.id,
            consumer_id=shop.consumer_id,
            app_kind=AppKind.OFFICIAL_ACCOUNT,
            appid=merchant.oa_appid or "",
            openid=user["openids"][merchant.oa_appid],
        )
    )
    fund_available(merchant.id, shop.consumer_id, 300_00, f"test-fund:{shop.consumer_id}")
    db.session.commit()
    return Payee(shop)
