"""A merchant whose campaign offers personal red packets, the sender (alice, the shop's consumer) and a
friend (bob) signed in to the mini-program, and helpers to fund and read packets through the API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from app.auth.principals import Role
from app.payments.models import Refund
from tests.campaign_setup import start_campaign
from tests.console_client import Console
from tests.factories import make_staff
from tests.payments.conftest import Shop, shop
from tests.worker import ledger_clean, run_jobs

__all__ = ["ledger_clean", "run_jobs", "shop"]

# Any rule will do: the campaign's budget funds the senders' rebates; its own rules do not fire here.
RULES = {
    "rules": [
        {
            "id": "ratio",
            "kind": "ratio",
            "priority": 10,
            "stacking": "combinable",
            "rate_bp": 100,
            "min_order_fen": 1_000_000,
        }
    ]
}
TERMS = {
    "sender_rate_bp": 1000,  # the sender earns 10% of the friend's spend
    "min_amount_fen": 100,
    "max_amount_fen": 20000,
    "min_spend_fen": 0,
    "max_order_fen": 100000,
    "valid_days": 30,
}
SENDER_WORST_CASE = 10000  # 10% of the ¥1,000 max order


@dataclass
class Friend:
    consumer_id: int
    token: str
    openid: str


@dataclass
class Personal:
    shop: Shop
    console: Console
    campaign_id: int
    bob: Friend
    carol: Friend

    def headers(self, who: Friend | None = None) -> dict[str, str]:
        if who is None:
            return self.shop.consumer_headers
        return {"Authorization": f"Bearer {who.token}", "X-WX-AppId": self.shop.merchant.mp_appid or ""}

    def create(self, who: Friend | None = None, **body: Any) -> TestResponse:
        fields = {"campaign_id": self.campaign_id, "amount_fen": 2000} | body
        return self.shop.client.post("/api/mp/v1/personal-packets", json=fields, headers=self.headers(who))

    def funded(self, **body: Any) -> dict[str, Any]:
        """A packet alice created and paid in WeChat (the sandbox notifies Hongli): its JSON and share code."""
        created = self.create(**body)
        assert created.status_code == 201, created.json
        sandbox = created.json["payment"]["sandbox"]
        paid = self.shop.sandbox.post(
            f"/transactions/{sandbox['out_trade_no']}/pay", {"mchid": sandbox["mchid"]}
        )
        assert paid["trade_state"] == "SUCCESS"
        packet = self.packet(created.json["packet"]["id"])
        assert packet["status"] == "funded", packet
        return packet

    def packet(self, packet_id: int, who: Friend | None = None) -> dict[str, Any]:
        response = self.shop.client.get(f"/api/mp/v1/personal-packets/{packet_id}", headers=self.headers(who))
        assert response.status_code == 200, response.json
        return response.json  # type: ignore[no-any-return]

    def claim(self, packet_id: int, who: Friend | None, share_code: str | None = None) -> TestResponse:
        body = {} if share_code is None else {"share_code": share_code}
        return self.shop.client.post(
            f"/api/mp/v1/personal-packets/{packet_id}/claim", json=body, headers=self.headers(who)
        )

    def confirm(self, packet_id: int, who: Friend | None, outcome: str) -> TestResponse:
        return self.shop.client.post(
            f"/api/mp/v1/personal-packets/{packet_id}/confirm",
            json={"outcome": outcome},
            headers=self.headers(who),
        )

    def wallet(self, who: Friend | None = None) -> dict[str, Any]:
        return self.shop.client.get("/api/mp/v1/wallet", headers=self.headers(who)).json  # type: ignore[no-any-return]

    def sign_in_again(self) -> None:
        """New sessions for alice and bob (the old ones lapse when the development clock jumps days)."""
        self.shop.consumer_token = login(self.shop, "alice", create=False).token
        self.bob = login(self.shop, "bob", create=False)

    def resolve_refund(self, db_session: Session, packet_id: int) -> None:
        """Submit the packet's refund (its queued job) and have the sandbox settle it (REFUND.SUCCESS)."""
        assert run_jobs("jobs.payments.submit_refund") == 1
        refund = db_session.scalars(
            select(Refund).where(Refund.out_refund_no == f"personal:{packet_id}")
        ).one()
        self.shop.sandbox.post(
            f"/refunds/{refund.wechat_refund_no}/resolve",
            {"mchid": self.shop.merchant.mchid, "status": "SUCCESS"},
        )


def login(shop: Shop, uid: str, *, create: bool = True) -> Friend:
    appid = shop.merchant.mp_appid or ""
    user = shop.sandbox.user(id=uid, nickname=uid.title()) if create else shop.sandbox.get(f"/users/{uid}")
    response = shop.client.post(
        "/api/mp/v1/login", json={"appid": appid, "code": shop.sandbox.login_code(uid, appid)}
    )
    assert response.status_code == 200, response.json
    return Friend(response.json["user"]["id"], response.json["token"], user["openids"][appid])


@pytest.fixture
def personal(shop: Shop, app: Flask, client: FlaskClient, db_session: Session) -> Personal:
    campaign_id = start_campaign(shop, app, client, RULES, name="Friends")
    owner = make_staff(merchant=shop.merchant, role=Role.OWNER)
    console = Console(client, shop.merchant.slug).login(owner.email)
    terms = client.put(
        f"/api/console/v1/campaigns/{campaign_id}/personal-terms", json=TERMS, headers=console.headers()
    )
    assert terms.status_code == 200, terms.json
    return Personal(shop, console, campaign_id, login(shop, "bob"), login(shop, "carol"))
