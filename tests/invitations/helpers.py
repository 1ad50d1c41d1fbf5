"""People of one merchant as HTTP callers (the payment tests' shop, signed in as others), and campaigns."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from app.ledger.checks import run_checks
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
