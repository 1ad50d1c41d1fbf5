"""Two more issuance channels (seed 003): a new customer's first visit to the mini-program, and a
mini-program task (browse / add to cart / share N times) checked against the consumer's own behaviour
events. Each issues once per consumer and stock, reserves its worst case, and reaches the card pack."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.db import utcnow
from app.coupons.models import Coupon
from app.ledger.accounts import campaign_accounts
from tests.coupons.conftest import Marketing, ledger_clean, run_jobs


def _stock(marketing: Marketing, channels: list[str], **body: Any) -> dict[str, Any]:
    return marketing.stock(
        name="Welcome ¥5", rule_id=None, face_value_fen=500, min_spend_fen=3000, channels=channels, **body
    )


def _post(marketing: Marketing, path: str, body: Any = None) -> Any:
    shop = marketing.shop
    return shop.client.post(f"/api/mp/v1{path}", json=body or {}, headers=shop.consumer_headers)


def _events(marketing: Marketing, kind: str, ages: list[timedelta]) -> None:
    now = utcnow()
    sent = _post(
        marketing,
        "/events",
        {
            "events": [
                {"type": kind, "sku": f"tea-{i}", "occurred_at": (now - age).isoformat()}
                for i, age in enumerate(ages)
            ]
        },
    )
    assert sent.status_code == 202, sent.json


def test_a_new_customers_first_visit_earns_one_voucher(
    marketing: Marketing, app: Flask, db_session: Session
) -> None:
    shop = marketing.shop
    reserved = campaign_accounts(shop.merchant.id, marketing.campaign_id).reserved
    assert _post(marketing, "/coupons/first-visit").status_code == 404  # nothing offered yet
    stock = _stock(marketing, ["first_visit"])

    first = _post(marketing, "/coupons/first-visit")
    again = _post(marketing, "/coupons/first-visit")

    assert first.status_code == again.status_code == 201, first.json
    assert first.json["id"] == again.json["id"]
    assert (first.json["channel"], first.json["stock_id"], first.json["face_value_fen"]) == (
        "first_visit",
        stock["id"],
        500,
    )
    assert reserved.balance.fen == 500
    assert run_jobs("jobs.coupons.send_coupon") == 1
    pack = shop.sandbox.get("/users/alice/card-pack")
    assert [c["stock_id"] for c in pack["vouchers"]] == [stock["wechat_stock_id"]]
    ledger_clean()


def test_a_customer_who_has_paid_is_not_new(marketing: Marketing, app: Flask, db_session: Session) -> None:
    shop = marketing.shop
    _stock(marketing, ["first_visit"])
    shop.pay(shop.register("PAID-1", 3000)["id"])

    refused = _post(marketing, "/coupons/first-visit")

    assert refused.status_code == 409 and refused.json["error"]["code"] == "not_a_new_customer"
    assert db_session.scalars(select(Coupon)).all() == []
    assert campaign_accounts(shop.merchant.id, marketing.campaign_id).reserved.balance.fen == 0
    ledger_clean()


def test_a_task_coupon_is_earned_by_the_consumers_own_events(
    marketing: Marketing, app: Flask, db_session: Session
) -> None:
    now = utcnow()
    base = {
        "campaign_id": marketing.campaign_id,
        "name": "x",
        "max_coupons": 1,
        "face_value_fen": 500,
        "min_spend_fen": 3000,
        "valid_from": now.isoformat(),
        "valid_until": (now + timedelta(days=3)).isoformat(),
    }
    task = {"kind": "view", "count": 3}
    for bad in ({"channels": ["task"]}, {"channels": ["follow"], "task": task}):
        refused = marketing.console.post("/api/console/v1/coupon-stocks", json=base | bad)
        assert refused.status_code == 422 and "task" in refused.json["error"]["details"]["fields"], (
            refused.json
        )
    stock = _stock(marketing, ["task"], task={"kind": "view", "count": 3, "within_days": 1})
    assert stock["task"] == {"kind": "view", "count": 3, "within_days": 1}

    # Two views today and one two days ago (outside the window): not done, nothing issued.
    _events(marketing, "view", [timedelta(minutes=5), timedelta(minutes=1), timedelta(days=2)])
    _events(marketing, "cart", [timedelta(minutes=1)])  # another kind does not count
    progress = marketing.shop.client.get("/api/mp/v1/coupons/tasks", headers=marketing.shop.consumer_headers)
    assert [(t["stock_id"], t["done"], t["count"], t["claimed"]) for t in progress.json] == [
        (stock["id"], 2, 3, False)
    ]
    early = _post(marketing, f"/coupons/tasks/{stock['id']}")
    assert early.status_code == 409 and early.json["error"]["code"] == "task_not_done"
    assert (early.json["error"]["details"]["done"], early.json["error"]["details"]["count"]) == (2, 3)
    assert db_session.scalars(select(Coupon)).all() == []

    _events(marketing, "view", [timedelta(seconds=10)])
    earned = _post(marketing, f"/coupons/tasks/{stock['id']}")
    again = _post(marketing, f"/coupons/tasks/{stock['id']}")
    assert earned.status_code == again.status_code == 201, earned.json
    assert earned.json["id"] == again.json["id"] and earned.json["channel"] == "task"
    assert _post(marketing, "/coupons/tasks/999999").status_code == 404
    progress = marketing.shop.client.get("/api/mp/v1/coupons/tasks", headers=marketing.shop.consumer_headers)
    assert progress.json[0]["claimed"] is True
    assert campaign_accounts(marketing.shop.merchant.id, marketing.campaign_id).reserved.balance.fen == 500
    ledger_clean()
