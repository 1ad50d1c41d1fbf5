"""Merchant coupons (商家券) end to end through the sandbox, and the capability-off answer.

A merchant whose account has them: a stock with our codes; the consumer gets the send-coupon plugin's
signed parameters; tapping it makes WeChat push COUPON.SEND; our pricing applies the coupon to a second
order (minimum, scope, validity); the payment books its cost and the two-way legs; ``coupons/use`` is
reported with our saved ``use_request_no``; a full refund reverses the legs and returns (退券) the coupon;
revoking deactivates it. A merchant without them is told so, once WeChat said NO_AUTH, and nothing is left
half-done."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit.models import AuditEntry
from app.auth.principals import Role
from app.core.db import utcnow
from app.core.refusals import STANDS
from app.coupons.models import Coupon, CouponKind, CouponStatus, CouponStock
from app.coupons.service import CapabilityOff, require_capability
from app.ledger.accounts import campaign_accounts, merchant_accounts
from app.payments.models import Refund
from app.rebates.models import RebateGrant
from jobs.payments import submit_refund
from tests.console_client import Console
from tests.coupons.conftest import WORST_CASE, Marketing, ledger_clean, run_jobs
from tests.factories import make_staff


def _coupon(db_session: Session, coupon_id: int) -> Coupon:
    return db_session.scalars(
        select(Coupon).where(Coupon.id == coupon_id).execution_options(populate_existing=True)
    ).one()


def _merchant_coupon_stock(marketing: Marketing, name: str) -> dict[str, Any]:
    """A merchant-coupon stock's creation body (the console's ``POST /coupon-stocks``)."""
    return {
        "campaign_id": marketing.campaign_id,
        "kind": "merchant_coupon",
        "name": name,
        "valid_from": utcnow().isoformat(),
        "valid_until": (utcnow() + timedelta(days=10)).isoformat(),
        "max_coupons": 5,
        "rule_id": "two-way",
    }


def test_without_merchant_coupons_the_capability_is_off_with_wechats_reason(
    marketing: Marketing, db_session: Session
) -> None:
    refused = marketing.console.post(
        "/api/console/v1/coupon-stocks",
        json=_merchant_coupon_stock(marketing, "满50减10"),
    )
    assert refused.status_code == 409, refused.json
    error = refused.json["error"]
    assert error["code"] == "coupon_capability_off"
    assert error["details"]["wechat_code"] == "NO_AUTH" and "2025-12-15" in error["details"]["reason"]
    capabilities = {c["kind"]: c for c in marketing.console.get("/api/console/v1/coupons/capabilities").json}
    assert capabilities["merchant_coupon"]["enabled"] is False
    assert capabilities["voucher"]["enabled"] is None  # never asked yet
    # Nothing half-done: the stock is stopped, no coupon, no money moved; a second try asks WeChat no more.
    stock = db_session.scalars(select(CouponStock)).one()
    assert stock.status.value == "stopped" and stock.issued == 0
    assert campaign_accounts(marketing.shop.merchant.id, marketing.campaign_id).reserved.balance.fen == 0
    calls = len(marketing.shop.sandbox.world.state.busifavor_stocks)
    again = marketing.console.post(
        "/api/console/v1/coupon-stocks",
        json=_merchant_coupon_stock(marketing, "again"),
    )
    assert again.status_code == 409 and again.json["error"]["code"] == "coupon_capability_off"
    assert db_session.scalar(select(func.count(CouponStock.id))) == 1
    assert len(marketing.shop.sandbox.world.state.busifavor_stocks) == calls
    ledger_clean()


def test_a_merchant_coupon_from_the_plugin_to_the_legs_and_back(
    marketing: Marketing, app: Flask, db_session: Session
) -> None:
    shop = marketing.shop
    merchant_id = shop.merchant.id
    accounts = campaign_accounts(merchant_id, marketing.campaign_id)
    shop.sandbox.post(f"/merchants/{shop.merchant.mchid}/busifavor", {"enabled": True})
    stock = marketing.stock(kind="merchant_coupon", channels=["plugin"], scope=["tea"])
    assert (stock["status"], stock["kind"]) == ("running", "merchant_coupon")

    # The mini-program asks for the plugin's parameters: our code is reserved now, signed for the plugin.
    params = shop.client.post(
        "/api/mp/v1/coupons/plugin", json={"stock_id": stock["id"]}, headers=shop.consumer_headers
    )
    assert params.status_code == 200, params.json
    offered = params.json
    assert offered["send_coupon_merchant"] == shop.merchant.mchid and len(offered["sign"]) == 64
    code = offered["send_coupon_params"][0]["coupon_code"]
    assert accounts.reserved.balance.fen == WORST_CASE
    # A forged signature: the plugin refuses; nothing is claimed.
    forged = {k: offered[k] for k in ("send_coupon_params", "send_coupon_merchant")} | {"sign": "0" * 64}
    answer = shop.sandbox.admin.post(
        "/_sandbox/users/alice/send-coupon", json={"appid": shop.merchant.mp_appid, **forged}
    )
    assert answer.status_code >= 400
    assert _coupon(db_session, offered["coupon_id"]).status is CouponStatus.RESERVED
    # The user taps it: WeChat pushes COUPON.SEND, the code is bound to the user.
    shop.sandbox.post(
        "/users/alice/send-coupon",
        {
            "appid": shop.merchant.mp_appid,
            **{k: offered[k] for k in ("send_coupon_params", "send_coupon_merchant", "sign")},
        },
    )
    coupon = _coupon(db_session, offered["coupon_id"])
    assert coupon.status is CouponStatus.CLAIMED and coupon.claimed_at is not None

    # Our pricing: below the minimum, or outside the scope, is refused; ¥60 of tea is priced ¥50.
    small = shop.register("MC-SMALL", 4000)
    refused = shop.client.post(
        f"/api/mp/v1/coupons/{coupon.id}/apply", json={"order_id": small["id"]}, headers=shop.consumer_headers
    )
    assert refused.status_code == 422 and refused.json["error"]["details"]["min_spend_fen"] == 5000
    order = shop.register("MC-2", 6000)
    applied = shop.client.post(
        f"/api/mp/v1/coupons/{coupon.id}/apply", json={"order_id": order["id"]}, headers=shop.consumer_headers
    )
    assert applied.status_code == 200, applied.json
    assert (applied.json["discount_fen"], applied.json["payable_fen"]) == (1000, 5000)
    pay = shop.pay_params(order["id"])
    assert (pay.json["payable_fen"], pay.json["discount_fen"]) == (5000, 1000)
    shop.sandbox.post(f"/transactions/{shop.out_trade_no(order['id'])}/pay", {"mchid": shop.merchant.mchid})

    coupon = _coupon(db_session, coupon.id)
    assert (coupon.status, coupon.order_id, coupon.discount.fen if coupon.discount else 0) == (
        CouponStatus.USED,
        order["id"],
        1000,
    )
    grants = db_session.scalars(select(RebateGrant).where(RebateGrant.coupon_id == coupon.id)).all()
    assert sorted((g.beneficiary, g.amount.fen) for g in grants) == [
        ("buyer", 300),
        ("coupon_discount", 1000),
        ("issuer_merchant", 600),
    ]
    assert merchant_accounts(merchant_id).rebate.balance.fen == 1600
    assert accounts.reserved.balance.fen == 0
    ledger_clean()
    # Reported to WeChat with our saved use_request_no; a repeat of the job changes nothing.
    assert run_jobs("jobs.coupons.report_merchant_coupon") == 1
    pack = shop.sandbox.get("/users/alice/card-pack")["merchant_coupons"]
    assert [(c["coupon_code"], c["coupon_state"], c["use_request_no"]) for c in pack] == [
        (code, "USED", coupon.use_request_no)
    ]

    # Refunded in full: legs and cost reversed; the coupon is returned (退券) and reserved again.
    refund = shop.refund("MC-2", "MC-R1", 5000)
    assert refund.status_code == 202, refund.json
    row = db_session.scalars(select(Refund).where(Refund.out_refund_no == "MC-R1")).one()
    submit_refund(row.id)
    shop.sandbox.post(
        f"/refunds/{row.wechat_refund_no}/resolve", {"mchid": shop.merchant.mchid, "status": "SUCCESS"}
    )
    assert merchant_accounts(merchant_id).rebate.balance.fen == 0
    assert run_jobs("jobs.coupons.return_merchant_coupon") == 1
    coupon = _coupon(db_session, coupon.id)
    assert (coupon.status, coupon.order_id, coupon.reserved.fen) == (CouponStatus.CLAIMED, None, WORST_CASE)
    pack = shop.sandbox.get("/users/alice/card-pack")["merchant_coupons"]
    assert [c["coupon_state"] for c in pack] == ["SENDED"]
    ledger_clean()

    # Used again on another order, then the next one is refused: used once per order.
    third = shop.register("MC-3", 5000)
    assert (
        shop.client.post(
            f"/api/mp/v1/coupons/{coupon.id}/apply",
            json={"order_id": third["id"]},
            headers=shop.consumer_headers,
        ).status_code
        == 200
    )
    shop.pay(third["id"])
    assert _coupon(db_session, coupon.id).status is CouponStatus.USED
    fourth = shop.register("MC-4", 9000)
    twice = shop.client.post(
        f"/api/mp/v1/coupons/{coupon.id}/apply",
        json={"order_id": fourth["id"]},
        headers=shop.consumer_headers,
    )
    assert twice.status_code == 409 and twice.json["error"]["details"]["status"] == "used"
    ledger_clean()


def test_an_expired_or_revoked_merchant_coupon_cannot_price_an_order(
    marketing: Marketing, app: Flask, db_session: Session
) -> None:
    shop = marketing.shop
    accounts = campaign_accounts(shop.merchant.id, marketing.campaign_id)
    shop.sandbox.post(f"/merchants/{shop.merchant.mchid}/busifavor", {"enabled": True})
    stock = marketing.stock(kind="merchant_coupon", channels=["plugin"])
    offered = shop.client.post(
        "/api/mp/v1/coupons/plugin", json={"stock_id": stock["id"]}, headers=shop.consumer_headers
    ).json
    # Claimed by H5 this time: the signed link opened inside WeChat (a tampered one is refused).
    tampered = offered["h5_url"].replace("coupon_code=HL", "coupon_code=HX")
    assert (
        shop.sandbox.admin.post("/_sandbox/users/alice/open-h5-coupon", json={"url": tampered}).status_code
        >= 400
    )
    shop.sandbox.post("/users/alice/open-h5-coupon", {"url": offered["h5_url"]})
    assert _coupon(db_session, offered["coupon_id"]).status is CouponStatus.CLAIMED
    # Past its validity (our clock): our pricing refuses it.
    order = shop.register("MC-LATE", 9000)
    coupon = _coupon(db_session, offered["coupon_id"])
    valid_until = coupon.valid_until
    coupon.valid_until = utcnow() - timedelta(seconds=1)
    db_session.flush()
    expired = shop.client.post(
        f"/api/mp/v1/coupons/{coupon.id}/apply", json={"order_id": order["id"]}, headers=shop.consumer_headers
    )
    assert expired.status_code == 409 and "not valid" in expired.json["error"]["message"]
    coupon.valid_until = valid_until
    db_session.flush()
    # Revoked by staff: released now, deactivated at WeChat after commit.
    revoked = marketing.console.post(
        f"/api/console/v1/coupons/{offered['coupon_id']}/revoke", json={"reason": "abuse"}
    )
    assert revoked.status_code == 200, revoked.json
    assert revoked.json["status"] == "deactivated" and accounts.reserved.balance.fen == 0
    assert run_jobs("jobs.coupons.deactivate_merchant_coupon") == 1
    assert [c["coupon_state"] for c in shop.sandbox.get("/users/alice/card-pack")["merchant_coupons"]] == [
        "DEACTIVATED"
    ]
    late = shop.client.post(
        f"/api/mp/v1/coupons/{offered['coupon_id']}/apply",
        json={"order_id": order["id"]},
        headers=shop.consumer_headers,
    )
    assert late.status_code == 409 and late.json["error"]["details"]["status"] == "deactivated"
    # A COUPON.SEND for a code we never offered, or of another stock, is acknowledged and ignored.
    forged = shop.forger.signed(
        {"event_type": "EVENT_TYPE_BUSICOUPON_SEND", "coupon_code": "HL9999999999", "stock_id": stock["wechat_stock_id"],
         "openid": shop.openid, "send_time": utcnow().isoformat()},
        event_type="COUPON.SEND",
    )  # fmt: skip
    answer = shop.client.post(
        f"/wechat/{shop.merchant.slug}/coupons/notify", data=forged[1], headers=forged[0]
    )
    assert answer.status_code == 204
    assert db_session.scalar(select(func.count(Coupon.id))) == 1
    ledger_clean()


def test_once_the_merchant_opens_merchant_coupons_an_operator_asks_wechat_again(
    marketing: Marketing, db_session: Session
) -> None:
    merchant = marketing.shop.merchant
    body = _merchant_coupon_stock(marketing, "满50减10")
    refused = marketing.console.post("/api/console/v1/coupon-stocks", json=body)
    assert refused.json["error"]["code"] == "coupon_capability_off"
    # The refusal stands a week; after that the next call asks WeChat by itself.
    with pytest.raises(CapabilityOff):
        require_capability(merchant.id, CouponKind.MERCHANT_COUPON, now=utcnow() + timedelta(days=6))
    require_capability(merchant.id, CouponKind.MERCHANT_COUPON, now=utcnow() + STANDS + timedelta(hours=1))

    path = "/api/console/v1/coupons/capabilities/merchant_coupon/ask-again"
    viewer = Console(marketing.console.client, merchant.slug).login(
        make_staff(merchant=merchant, role=Role.VIEWER).email
    )
    assert viewer.post(path).status_code == 403
    operator = Console(marketing.console.client, merchant.slug).login(
        make_staff(merchant=merchant, role=Role.OPERATOR).email
    )
    assert operator.post("/api/console/v1/coupons/capabilities/voucher/ask-again").json["error"]["code"] == (
        "capability_not_off"  # never refused
    )
    assert operator.post("/api/console/v1/coupons/capabilities/bogus/ask-again").status_code == 404
    asked = operator.post(path)
    assert asked.status_code == 200, asked.json
    assert {c["kind"]: c["enabled"] for c in asked.json}["merchant_coupon"] is None
    audit = db_session.scalars(
        select(AuditEntry).where(AuditEntry.action == "coupons.capability.ask_again")
    ).one()
    assert (audit.before or {})["wechat_code"] == "NO_AUTH"

    # The merchant opened merchant coupons at WeChat Pay: a stock is made.
    marketing.shop.sandbox.post(f"/merchants/{merchant.mchid}/busifavor", {"enabled": True})
    made = operator.post("/api/console/v1/coupon-stocks", json=body | {"name": "again"})
    assert made.status_code == 201, made.json
    capabilities = {
        c["kind"]: c["enabled"] for c in operator.get("/api/console/v1/coupons/capabilities").json
    }
    assert capabilities["merchant_coupon"] is True
    ledger_clean()
