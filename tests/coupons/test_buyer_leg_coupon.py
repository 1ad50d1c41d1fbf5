"""A two-way rule may pay the buyer's leg as a coupon instead of cash (seed 000: 返利……或者下次消费可用的
优惠券): the spent packet's reservation pays the issuer leg in cash and moves the coupon's worst case onto the
coupon; a leg worth less than the coupon, or a stock that cannot issue, is paid in cash; an unused merchant
coupon is taken back when its order is refunded in full. The ledger check is clean after every step."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.campaigns.models import Campaign
from app.coupons.models import Coupon, CouponStatus
from app.ledger.accounts import campaign_accounts, merchant_accounts
from app.payments.models import Refund
from app.rebates.models import RebateGrant
from jobs.payments import submit_refund
from tests.coupons.conftest import TWO_WAY, WORST_CASE, Marketing, ledger_clean, run_jobs


def _plain_stock(marketing: Marketing, face_fen: int, **body: Any) -> dict[str, Any]:
    return marketing.stock(
        name=f"Thanks ¥{face_fen // 100}",
        rule_id=None,
        face_value_fen=face_fen,
        min_spend_fen=3000,
        channels=[],
        **body,
    )


def _pay_legs_with(marketing: Marketing, stock_id: int) -> None:
    rule = TWO_WAY["rules"][0] | {"buyer_leg": "coupon", "buyer_leg_stock_id": stock_id}
    changed = marketing.console.post(
        f"/api/console/v1/campaigns/{marketing.campaign_id}/rules", json={"rules": {"rules": [rule]}}
    )
    assert changed.status_code == 200, changed.json


def _spend_packet(marketing: Marketing, ref: str, total_fen: int) -> dict[str, Any]:
    """Order 1 (¥200) earns the ¥10 packet; order ``ref`` spends it, paid in WeChat."""
    shop = marketing.shop
    shop.pay(shop.register(f"{ref}-1", 20000)["id"])
    packet = shop.client.get("/api/mp/v1/red-packets", headers=shop.consumer_headers).json[0]
    order = shop.register(ref, total_fen)
    assert shop.pay_params(order["id"], red_packet_id=packet["id"]).json["payable_fen"] == total_fen - 1000
    shop.sandbox.post(f"/transactions/{shop.out_trade_no(order['id'])}/pay", {"mchid": shop.merchant.mchid})
    return order


def _legs(db_session: Session, order_id: int) -> list[tuple[str, int]]:
    return sorted(
        (grant.beneficiary, grant.amount.fen)
        for grant in db_session.scalars(select(RebateGrant).where(RebateGrant.order_id == order_id))
    )


def test_the_buyers_leg_is_a_voucher_and_the_voucher_costs_when_used(
    marketing: Marketing, app: Flask, db_session: Session
) -> None:
    shop = marketing.shop
    accounts = campaign_accounts(shop.merchant.id, marketing.campaign_id)
    stock = _plain_stock(marketing, 300)
    refused = marketing.console.post(
        f"/api/console/v1/campaigns/{marketing.campaign_id}/rules",
        json={"rules": {"rules": [TWO_WAY["rules"][0] | {"buyer_leg": "coupon"}]}},
    )
    assert refused.status_code == 422
    assert "rules.0.buyer_leg_stock_id" in refused.json["error"]["details"]["fields"]
    _pay_legs_with(marketing, stock["id"])
    budget_before = accounts.budget.balance.fen

    order = _spend_packet(marketing, "LEG", 12000)

    # The issuer's 10% of ¥120 in cash; the buyer's 5% (¥6) earns the ¥3 voucher instead of cash.
    assert _legs(db_session, order["id"]) == [("issuer_merchant", 1200), ("red_packet_discount", 1000)]
    wallet = shop.client.get("/api/mp/v1/wallet", headers=shop.consumer_headers).json
    assert wallet["pending_fen"] == 0
    [coupon] = db_session.scalars(select(Coupon).where(Coupon.stock_id == stock["id"])).all()
    assert coupon.issue_key.startswith(f"buyer-leg:{order['id']}:red-packet:")
    assert (coupon.channel.value, coupon.status, coupon.face_value.fen, coupon.reserved.fen) == (
        "rule",
        CouponStatus.RESERVED,
        300,
        300,
    )
    # The packet's reservation: ¥10 face + ¥12 issuer leg paid, ¥3 kept for the voucher, the rest released.
    assert accounts.reserved.balance.fen == 300
    assert accounts.budget.balance.fen == budget_before - WORST_CASE + (WORST_CASE - 1000 - 1200 - 300)
    ledger_clean()

    # Sent into the card pack; the next order (¥40 ≥ its ¥30 minimum) has WeChat apply it at checkout.
    assert run_jobs("jobs.coupons.send_coupon") == 1
    third = shop.register("LEG-3", 4000)
    paid = shop.pay(third["id"])
    assert paid["amount"]["payer_total"] == 3700
    coupon = db_session.scalars(
        select(Coupon).where(Coupon.id == coupon.id).execution_options(populate_existing=True)
    ).one()
    assert (coupon.status, coupon.order_id) == (CouponStatus.USED, third["id"])
    assert _legs(db_session, third["id"]) == [("coupon_discount", 300)]  # a plain coupon: no legs of its own
    assert accounts.reserved.balance.fen == 0
    assert merchant_accounts(shop.merchant.id).rebate.balance.fen == 1000 + 1200 + 300
    ledger_clean()


def test_a_leg_worth_less_than_the_coupon_or_a_stopped_stock_is_paid_in_cash(
    marketing: Marketing, app: Flask, db_session: Session
) -> None:
    shop = marketing.shop
    stock = _plain_stock(marketing, 500)
    _pay_legs_with(marketing, stock["id"])

    # 5% of ¥60 = ¥3 < the ¥5 coupon: cash, and the campaign says why.
    small = _spend_packet(marketing, "SMALL", 6000)
    assert _legs(db_session, small["id"]) == [
        ("buyer", 300),
        ("issuer_merchant", 600),
        ("red_packet_discount", 1000),
    ]
    # A stopped stock cannot carry a ¥10 leg (5% of ¥200) either: cash again.
    stopped = marketing.console.post(
        f"/api/console/v1/coupon-stocks/{stock['id']}/status", json={"status": "stopped"}
    )
    assert stopped.status_code == 200, stopped.json
    big = _spend_packet(marketing, "BIG", 20000)
    assert ("buyer", 1000) in _legs(db_session, big["id"])
    assert db_session.scalars(select(Coupon).where(Coupon.stock_id == stock["id"])).all() == []
    wallet = shop.client.get("/api/mp/v1/wallet", headers=shop.consumer_headers).json
    assert wallet["pending_fen"] == 300 + 1000  # the two legs in cash
    campaign = db_session.get(Campaign, marketing.campaign_id)
    assert campaign is not None
    db_session.refresh(campaign)
    assert any("buyer leg paid in cash" in reason for reason in (campaign.skip_stats or {}))
    ledger_clean()


def test_a_merchant_coupon_leg_is_taken_back_when_its_order_is_refunded_in_full(
    marketing: Marketing, app: Flask, db_session: Session
) -> None:
    shop = marketing.shop
    accounts = campaign_accounts(shop.merchant.id, marketing.campaign_id)
    shop.sandbox.post(f"/merchants/{shop.merchant.mchid}/busifavor", {"enabled": True})
    stock = _plain_stock(marketing, 300, kind="merchant_coupon", scope=["tea"])
    _pay_legs_with(marketing, stock["id"])
    order = _spend_packet(marketing, "MCL", 12000)
    [coupon] = db_session.scalars(select(Coupon).where(Coupon.stock_id == stock["id"])).all()
    assert (coupon.status, coupon.reserved.fen) == (CouponStatus.RESERVED, 300)
    assert coupon.issue_key.startswith(f"buyer-leg:{order['id']}:")
    # The mini-program offers that very coupon through the plugin; the buyer taps it: COUPON.SEND binds it.
    offered = shop.client.post(
        "/api/mp/v1/coupons/plugin",
        json={"stock_id": stock["id"], "coupon_id": coupon.id},
        headers=shop.consumer_headers,
    )
    assert offered.status_code == 200, offered.json
    assert offered.json["coupon_id"] == coupon.id
    assert offered.json["send_coupon_params"][0]["coupon_code"] == coupon.wechat_coupon_id
    shop.sandbox.post(
        "/users/alice/send-coupon",
        {
            "appid": shop.merchant.mp_appid,
            **{k: offered.json[k] for k in ("send_coupon_params", "send_coupon_merchant", "sign")},
        },
    )
    db_session.refresh(coupon)
    assert coupon.status is CouponStatus.CLAIMED
    not_mine = shop.client.post(
        "/api/mp/v1/coupons/plugin",
        json={"stock_id": stock["id"], "coupon_id": coupon.id + 1000},
        headers=shop.consumer_headers,
    )
    assert not_mine.status_code == 404
    budget_before = accounts.budget.balance.fen

    refund = shop.refund("MCL", "MCL-R1", 11000)
    assert refund.status_code == 202, refund.json
    row = db_session.scalars(select(Refund).where(Refund.out_refund_no == "MCL-R1")).one()
    submit_refund(row.id)
    shop.sandbox.post(
        f"/refunds/{row.wechat_refund_no}/resolve", {"mchid": shop.merchant.mchid, "status": "SUCCESS"}
    )

    coupon = db_session.scalars(
        select(Coupon).where(Coupon.id == coupon.id).execution_options(populate_existing=True)
    ).one()
    assert (coupon.status, coupon.reserved.fen) == (CouponStatus.DEACTIVATED, 0)
    assert accounts.reserved.balance.fen == 0
    # Deactivated at WeChat too (使券失效, its saved request number), after commit.
    assert run_jobs("jobs.coupons.deactivate_merchant_coupon") == 1
    [code] = shop.sandbox.get("/users/alice/card-pack")["merchant_coupons"]
    assert code["coupon_code"] == coupon.wechat_coupon_id and code["coupon_state"] == "DEACTIVATED"
    # Back to the budget: the coupon's ¥3, and the packet's ¥10 and the issuer's ¥12 clawed back — the
    # campaign's ¥1,000 whole again.
    assert accounts.budget.balance.fen == budget_before + 300 + 1000 + 1200 == 100000
    ledger_clean()
