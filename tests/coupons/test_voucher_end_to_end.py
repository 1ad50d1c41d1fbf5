"""The voucher end to end through the sandbox: a follow (the message server's subscribe) earns a voucher sent
into the card pack; a second order at or above its minimum, paid with WeChat Pay, has it applied at checkout;
COUPON.USE books the coupon's cost and the two-way legs pending; they settle after the after-sales window; a
refund reverses them pro rata; the ledger check is clean after every step."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.db import utcnow
from app.coupons.models import Coupon, CouponPromotion, CouponStatus
from app.ledger.accounts import campaign_accounts, merchant_accounts
from app.payments.models import Refund
from app.rebates.models import GrantStatus, RebateGrant
from app.rebates.service import settle_due
from jobs.payments import submit_refund
from tests.coupons.conftest import TWO_WAY, WORST_CASE, Marketing, ledger_clean, run_jobs


def _follow(marketing: Marketing, app: Flask) -> None:
    shop = marketing.shop
    shop.sandbox.post("/users/alice/follow", {"appid": shop.merchant.oa_appid})
    assert run_jobs("jobs.followers.welcome") == 1


def _coupon(db_session: Session, coupon_id: int) -> Coupon:
    return db_session.scalars(
        select(Coupon).where(Coupon.id == coupon_id).execution_options(populate_existing=True)
    ).one()


def test_a_followers_voucher_is_applied_at_checkout_and_drives_the_two_way_legs(
    marketing: Marketing, app: Flask, db_session: Session
) -> None:
    shop = marketing.shop
    merchant_id = shop.merchant.id
    accounts = campaign_accounts(merchant_id, marketing.campaign_id)
    stock = marketing.stock()
    assert (stock["status"], stock["kind"], stock["worst_case_cost_fen"]) == (
        "running",
        "voucher",
        WORST_CASE,
    )
    assert stock["wechat_stock_id"]

    # A follow: the message server's welcome job emits follower.subscribed; the voucher is reserved at once
    # and sent by its job (our out_request_no, saved first).
    _follow(marketing, app)
    mine = shop.client.get("/api/mp/v1/coupons", headers=shop.consumer_headers).json
    assert [(c["status"], c["channel"], c["face_value_fen"]) for c in mine] == [("reserved", "follow", 1000)]
    assert accounts.reserved.balance.fen == WORST_CASE
    assert accounts.budget.balance.fen == 100000 - WORST_CASE
    assert run_jobs("jobs.coupons.send_coupon") == 1
    coupon = _coupon(db_session, mine[0]["id"])
    assert coupon.status is CouponStatus.SENT and coupon.wechat_coupon_id
    pack = shop.sandbox.get("/users/alice/card-pack")
    assert [(v["coupon_id"], v["status"]) for v in pack["vouchers"]] == [(coupon.wechat_coupon_id, "SENDED")]
    ledger_clean()

    # A second order of ¥50 (the voucher's minimum) paid in WeChat: checkout applies the voucher.
    order = shop.register("VOUCHER-2", 5000)
    paid = shop.pay(order["id"])
    assert (paid["amount"]["total"], paid["amount"]["payer_total"]) == (5000, 4000)
    assert paid["promotion_detail"][0]["coupon_id"] == coupon.wechat_coupon_id
    coupon = _coupon(db_session, coupon.id)
    assert (coupon.status, coupon.order_id, coupon.reserved.fen) == (CouponStatus.USED, order["id"], 0)
    assert coupon.booked_at is not None
    grants = db_session.scalars(
        select(RebateGrant).where(RebateGrant.coupon_id == coupon.id).order_by(RebateGrant.id)
    ).all()
    assert sorted((g.beneficiary, g.amount.fen, g.status) for g in grants) == [
        ("buyer", 250, GrantStatus.PENDING),
        ("coupon_discount", 1000, GrantStatus.AVAILABLE),
        ("issuer_merchant", 500, GrantStatus.AVAILABLE),
    ]
    wallet = shop.client.get("/api/mp/v1/wallet", headers=shop.consumer_headers).json
    assert (wallet["pending_fen"], wallet["available_fen"]) == (250, 0)
    assert merchant_accounts(merchant_id).rebate.balance.fen == 1000 + 500
    assert accounts.reserved.balance.fen == 0
    assert accounts.budget.balance.fen == 100000 - 1000 - 500 - 250
    ledger_clean()

    # WeChat's retries of COUPON.USE change nothing.
    shop.sandbox.post("/clock/advance", {"seconds": 120})
    assert merchant_accounts(merchant_id).rebate.balance.fen == 1500
    ledger_clean()

    # Received, and the after-sales window passes: the buyer's leg becomes available.
    received = shop.client.post(
        "/api/shop/v1/orders/VOUCHER-2/events",
        headers=shop.shop_headers,
        json={"type": "received", "occurred_at": utcnow().isoformat()},
    )
    assert received.status_code == 200
    assert settle_due(now=utcnow() + timedelta(days=6)) == 0
    assert settle_due(now=utcnow() + timedelta(days=8)) == 1
    wallet = shop.client.get("/api/mp/v1/wallet", headers=shop.consumer_headers).json
    assert (wallet["pending_fen"], wallet["available_fen"]) == (0, 250)
    ledger_clean()

    # Half refunded: the coupon's cost and both legs are reversed by half.
    refund = shop.refund("VOUCHER-2", "VOUCHER-R1", 2500)
    assert refund.status_code == 202, refund.json
    row = db_session.scalars(select(Refund).where(Refund.out_refund_no == "VOUCHER-R1")).one()
    submit_refund(row.id)
    shop.sandbox.post(
        f"/refunds/{row.wechat_refund_no}/resolve", {"mchid": shop.merchant.mchid, "status": "SUCCESS"}
    )
    wallet = shop.client.get("/api/mp/v1/wallet", headers=shop.consumer_headers).json
    assert wallet["available_fen"] == 125
    assert merchant_accounts(merchant_id).rebate.balance.fen == 500 + 250
    assert accounts.budget.balance.fen == 100000 - 1500 - 250 + 750 + 125
    ledger_clean()

    # The console's metrics for the stock and its channel.
    metrics = marketing.console.get("/api/console/v1/coupons/metrics").json
    assert len(metrics) == 1
    figures = {
        k: metrics[0][k]
        for k in ("issued", "claimed", "redeemed", "redemption_rate_bp", "gmv_fen", "cost_fen")
    }
    assert figures == {
        "issued": 1,
        "claimed": 1,
        "redeemed": 1,
        "redemption_rate_bp": 10000,
        "gmv_fen": 5000,
        "cost_fen": (1000 + 500 + 250) // 2,
    }
    assert [c["channel"] for c in metrics[0]["channels"]] == ["follow"]
    assert metrics[0]["mean_seconds_to_redeem"] is not None


def test_the_payments_promotion_detail_is_recorded_per_order(
    marketing: Marketing, app: Flask, db_session: Session
) -> None:
    shop = marketing.shop
    stock = marketing.stock()
    issued = marketing.console.post(
        f"/api/console/v1/coupon-stocks/{stock['id']}/coupons",
        json={"consumer_id": shop.consumer_id, "idempotency_key": "k1"},
    )
    assert issued.status_code == 201, issued.json
    again = marketing.console.post(
        f"/api/console/v1/coupon-stocks/{stock['id']}/coupons",
        json={"consumer_id": shop.consumer_id, "idempotency_key": "k1"},
    )
    assert again.json["id"] == issued.json["id"]  # one coupon per key
    assert run_jobs("jobs.coupons.send_coupon") == 1
    order = shop.register("VOUCHER-P", 8000)
    shop.pay(order["id"])
    coupon = _coupon(db_session, issued.json["id"])
    assert (coupon.status, coupon.discount.fen if coupon.discount else None) == (CouponStatus.USED, 1000)
    lines = db_session.scalars(select(CouponPromotion).where(CouponPromotion.order_id == order["id"])).all()
    assert [
        (
            p.coupon_id,
            p.wechat_coupon_id,
            p.amount.fen,
            p.merchant_contribute.fen,
            p.wechat_contribute.fen,
            p.type,
        )
        for p in lines
    ] == [(coupon.id, coupon.wechat_coupon_id, 1000, 1000, 0, "CASH")]
    assert (coupon.merchant_contribute.fen, coupon.wechat_contribute.fen) == (1000, 0)  # type: ignore[union-attr]
    ledger_clean()


def test_a_two_way_rule_can_reward_with_a_voucher_whose_use_drives_the_legs(
    marketing: Marketing, app: Flask, db_session: Session
) -> None:
    shop = marketing.shop
    merchant_id = shop.merchant.id
    accounts = campaign_accounts(merchant_id, marketing.campaign_id)
    stock = marketing.stock(channels=[])
    rules = {"rules": [TWO_WAY["rules"][0] | {"reward": "coupon", "coupon_stock_id": stock["id"]}]}
    changed = marketing.console.post(
        f"/api/console/v1/campaigns/{marketing.campaign_id}/rules", json={"rules": rules}
    )
    assert changed.status_code == 200, changed.json
    refused = marketing.console.post(
        f"/api/console/v1/campaigns/{marketing.campaign_id}/rules",
        json={"rules": {"rules": [TWO_WAY["rules"][0] | {"reward": "coupon"}]}},
    )
    assert (
        refused.status_code == 422 and "rules.0.coupon_stock_id" in refused.json["error"]["details"]["fields"]
    )

    # Order 1 (¥200) reaches the trigger: the reward is a voucher of the stock, reserved with the order.
    first = shop.register("RULE-1", 20000)
    shop.pay(first["id"])
    packets = shop.client.get("/api/mp/v1/red-packets", headers=shop.consumer_headers).json
    assert packets == []
    mine = shop.client.get("/api/mp/v1/coupons", headers=shop.consumer_headers).json
    assert [(c["channel"], c["status"], c["face_value_fen"]) for c in mine] == [("rule", "reserved", 1000)]
    assert accounts.reserved.balance.fen == WORST_CASE
    ledger_clean()
    assert run_jobs("jobs.coupons.send_coupon") == 1

    # Order 2 (¥50) paid in WeChat: the voucher applies; its use books the legs at the rule's rates.
    second = shop.register("RULE-2", 5000)
    paid = shop.pay(second["id"])
    assert paid["amount"]["payer_total"] == 4000
    wallet = shop.client.get("/api/mp/v1/wallet", headers=shop.consumer_headers).json
    assert wallet["pending_fen"] == 250
    assert merchant_accounts(merchant_id).rebate.balance.fen == 1000 + 500
    assert accounts.reserved.balance.fen == 0
    ledger_clean()


def test_a_stock_paused_restarted_cut_at_wechat_and_stopped(
    marketing: Marketing, db_session: Session
) -> None:
    shop = marketing.shop
    stock = marketing.stock(max_coupons=3)
    path = f"/api/console/v1/coupon-stocks/{stock['id']}"

    def issue(key: str) -> Any:
        return marketing.console.post(
            f"{path}/coupons", json={"consumer_id": shop.consumer_id, "idempotency_key": key}
        )

    paused = marketing.console.post(f"{path}/status", json={"status": "paused"})
    assert paused.json["status"] == "paused"
    assert shop.sandbox.world.state.stocks[stock["wechat_stock_id"]].status == "paused"
    refused = issue("p1")
    assert refused.status_code == 409 and refused.json["error"]["code"] == "coupon_stock_exhausted"
    assert marketing.console.post(f"{path}/status", json={"status": "running"}).json["status"] == "running"
    assert issue("p2").status_code == 201

    # The merchant cut WeChat's stock to 2 in the portal: read back, the smaller limit issues and is reported.
    shop.sandbox.world.state.stocks[stock["wechat_stock_id"]].max_coupons = 2
    synced = marketing.console.post(f"{path}/wechat-size", json={})
    assert synced.status_code == 200, synced.json
    assert (synced.json["limit"], synced.json["wechat_max_coupons"]) == (2, 2)
    assert issue("p3").status_code == 201
    assert issue("p4").json["error"]["details"]["limit"] == 2
    metrics = marketing.console.get("/api/console/v1/coupons/metrics").json[0]
    assert (metrics["limit"], metrics["limit_difference"], metrics["issued"]) == (2, 1, 2)

    stopped = marketing.console.post(f"{path}/status", json={"status": "stopped"})
    assert stopped.json["status"] == "stopped"
    assert marketing.console.post(f"{path}/status", json={"status": "running"}).status_code == 409
    viewer = marketing.console.get(f"{path}/coupons").json
    assert [c["status"] for c in viewer] == ["reserved", "reserved"]
    ledger_clean()
