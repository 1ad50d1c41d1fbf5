"""The whole follower story of issue #20 in one walk through the sandbox, in safe mode: an encrypted
``subscribe`` carrying an inviter's QR scene → the follower linked to the inviter and sent a voucher → in
the card pack → the follower's order at or above its minimum, paid with WeChat Pay applying it → COUPON.USE
→ both two-way legs booked pending → settled after the after-sales window → one subscribe message spent
on the one consent given → the order refunded in half → legs reversed pro rata; ``ledger check`` clean
after every step."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.db import utcnow
from app.coupons.models import Coupon, CouponStatus
from app.followers.models import Follower, OaMessage, QrScene
from app.invitations.models import InviteBinding
from app.ledger.accounts import campaign_accounts, merchant_accounts
from app.messages.models import ConsumerMessage, MessageStatus
from app.messages.service import collect
from app.payments.models import Refund
from app.rebates.models import GrantStatus, RebateGrant
from app.rebates.service import settle_due
from jobs.payments import submit_refund
from tests.coupons.conftest import WORST_CASE, Marketing, ledger_clean, run_jobs
from tests.payments.conftest import Shop

TEMPLATE = "TPL-REBATE-AVAILABLE-1"


def _as_follower(shop: Shop, user: str) -> Shop:
    """``shop`` seen by the follower once they open the mini-program (same consumer, by unionid)."""
    code = shop.sandbox.login_code(user, shop.merchant.mp_appid or "")
    login = shop.client.post("/api/mp/v1/login", json={"appid": shop.merchant.mp_appid, "code": code})
    assert login.status_code == 200, login.json
    openid = shop.sandbox.get(f"/users/{user}")["openids"][shop.merchant.mp_appid]
    return dataclasses.replace(
        shop, consumer_token=login.json["token"], consumer_id=login.json["user"]["id"], openid=openid
    )


def test_a_follow_through_an_inviters_code_to_a_refunded_voucher_order(
    marketing: Marketing, app: Flask, db_session: Session
) -> None:
    shop = marketing.shop
    merchant_id = shop.merchant.id
    accounts = campaign_accounts(merchant_id, marketing.campaign_id)
    oa_app = shop.sandbox.world.state.apps[shop.merchant.oa_appid or ""]
    oa_app.safe_mode = True  # the account's message server in safe mode: pushes are encrypted
    stock = marketing.stock()  # a voucher of the two-way rule, issued on follow
    templated = marketing.console.client.put(
        "/api/console/v1/message-templates",
        json={
            "kind": "rebate_available",
            "channel": "mp_subscribe",
            "template_id": TEMPLATE,
            "fields": {"thing1": "title", "amount2": "amount", "time3": "time"},
            "page": "pages/wallet/index",
        },
        headers=marketing.console.headers(),
    )
    assert templated.status_code == 200, templated.json
    code = marketing.console.post(
        "/api/console/v1/qr-codes", json={"purpose": "inviter", "inviter_id": shop.consumer_id}
    )
    assert code.status_code == 201, code.json
    ticket = db_session.get(QrScene, code.json["id"]).ticket  # type: ignore[union-attr]

    # Bob scans Alice's code and follows: the push is encrypted (safe mode), the event carries qrscene_.
    shop.sandbox.user(id="bob", nickname="Bob")
    openid = shop.sandbox.post("/users/bob/follow", {"appid": shop.merchant.oa_appid, "ticket": ticket})[
        "openid"
    ]
    [pushed] = [n for n in shop.sandbox.get("/notifications")["notifications"] if n["channel"] == "oa"]
    assert (
        pushed["state"] == "delivered" and "<Encrypt>" in pushed["body"] and "qrscene_" not in pushed["body"]
    )
    assert db_session.scalars(select(OaMessage)).one().event == "subscribe"
    assert run_jobs("jobs.followers.welcome") == 1
    follower = db_session.scalars(select(Follower).where(Follower.openid == openid)).one()
    assert follower.consumer_id is not None and follower.scene_id == code.json["id"]
    binding = db_session.scalars(
        select(InviteBinding).where(InviteBinding.invitee_id == follower.consumer_id)
    ).one()
    assert binding.inviter_id == shop.consumer_id
    assert accounts.reserved.balance.fen == WORST_CASE
    assert run_jobs("jobs.coupons.send_coupon") == 1
    [voucher] = shop.sandbox.get("/users/bob/card-pack")["vouchers"]
    assert voucher["status"] == "SENDED" and voucher["stock_id"] == stock["wechat_stock_id"]
    ledger_clean()

    # Bob opens the mini-program (the same consumer), agrees to one rebate message, and buys ¥60 of tea.
    bob = _as_follower(shop, "bob")
    assert bob.consumer_id == follower.consumer_id
    answers = shop.sandbox.post(
        "/users/bob/subscribe-consent", {"appid": shop.merchant.mp_appid, "template_ids": [TEMPLATE]}
    )
    assert (
        shop.client.post(
            "/api/mp/v1/message-consents", headers=bob.consumer_headers, json={"results": answers}
        ).status_code
        == 200
    )
    order = bob.register("BOB-1", 6000)
    paid = bob.pay(order["id"])
    assert (paid["amount"]["total"], paid["amount"]["payer_total"]) == (6000, 5000)
    coupon = db_session.scalars(
        select(Coupon).where(Coupon.consumer_id == bob.consumer_id).execution_options(populate_existing=True)
    ).one()
    assert (coupon.status, coupon.order_id, coupon.wechat_coupon_id) == (
        CouponStatus.USED,
        order["id"],
        voucher["coupon_id"],
    )
    grants = db_session.scalars(select(RebateGrant).where(RebateGrant.coupon_id == coupon.id)).all()
    # Of the ¥60 order: the issuer (the merchant) 10%, the buyer 5%, pending until the window passes.
    assert sorted((g.beneficiary, g.amount.fen, g.status) for g in grants) == [
        ("buyer", 300, GrantStatus.PENDING),
        ("coupon_discount", 1000, GrantStatus.AVAILABLE),
        ("issuer_merchant", 600, GrantStatus.AVAILABLE),
    ]
    ledger_clean()

    # Received; the window passes; the leg is available and announced once, on the one consent.
    received = shop.client.post(
        "/api/shop/v1/orders/BOB-1/events",
        headers=shop.shop_headers,
        json={"type": "received", "occurred_at": utcnow().isoformat()},
    )
    assert received.status_code == 200
    assert settle_due(now=utcnow() + timedelta(days=8)) == 1
    db_session.commit()
    assert collect() == 1 and collect() == 0
    db_session.commit()
    assert run_jobs("jobs.messages.send") == 1
    [message] = [m for m in shop.sandbox.get("/messages")["messages"] if m["user_id"] == "bob"]
    assert (message["kind"], message["template_id"], message["data"]["amount2"]) == (
        "subscribe",
        TEMPLATE,
        {"value": "3.00元"},
    )
    assert [m.status for m in db_session.scalars(select(ConsumerMessage))] == [MessageStatus.SENT]
    wallet = shop.client.get("/api/mp/v1/wallet", headers=bob.consumer_headers).json
    assert (wallet["pending_fen"], wallet["available_fen"]) == (0, 300)
    ledger_clean()

    # Half refunded (of the ¥60 WeChat was asked to charge): the coupon's cost and both legs reversed by half.
    refund = shop.refund("BOB-1", "BOB-R1", 3000)  # half of the ¥60 asked
    assert refund.status_code == 202, refund.json
    row = db_session.scalars(select(Refund).where(Refund.out_refund_no == "BOB-R1")).one()
    submit_refund(row.id)
    shop.sandbox.post(
        f"/refunds/{row.wechat_refund_no}/resolve", {"mchid": shop.merchant.mchid, "status": "SUCCESS"}
    )
    wallet = shop.client.get("/api/mp/v1/wallet", headers=bob.consumer_headers).json
    assert wallet["available_fen"] == 150
    assert merchant_accounts(merchant_id).rebate.balance.fen == (1000 + 600) // 2
    assert accounts.budget.balance.fen == 100000 - (1000 + 600 + 300) // 2
    ledger_clean()
