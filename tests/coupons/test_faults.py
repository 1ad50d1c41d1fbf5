"""WeChat's faults on the coupon paths: a send whose answer is lost is retried with the same out_request_no
(one coupon at WeChat); a refused send releases the reservation; duplicated and retried COUPON.USE
notifications book once."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from app.coupons.models import Coupon, CouponStatus
from app.coupons.service import deliver_coupon
from app.ledger.accounts import campaign_accounts, merchant_accounts
from app.orders.models import Order
from tests.coupons.conftest import WORST_CASE, Marketing, ledger_clean
from wechat.errors import WeChatError


def _issue(marketing: Marketing, key: str) -> int:
    stock = marketing.stock() if not hasattr(marketing, "_stock") else marketing._stock  # type: ignore[attr-defined]
    marketing._stock = stock  # type: ignore[attr-defined]
    issued = marketing.console.post(
        f"/api/console/v1/coupon-stocks/{stock['id']}/coupons",
        json={"consumer_id": marketing.shop.consumer_id, "idempotency_key": key},
    )
    assert issued.status_code == 201, issued.json
    return int(issued.json["id"])


def test_a_lost_send_answer_is_retried_with_the_same_key(marketing: Marketing, db_session: Session) -> None:
    shop = marketing.shop
    coupon_id = _issue(marketing, "f1")
    shop.sandbox.post("/faults", {"api": "v3.favor_send", "mode": "accept_then_error", "count": 1})
    with pytest.raises(WeChatError):
        deliver_coupon(coupon_id)  # WeChat sent it, but we do not know: still reserved, same key kept
    coupon = db_session.get(Coupon, coupon_id)
    assert coupon is not None and coupon.status is CouponStatus.RESERVED and coupon.attempts == 1
    key = coupon.out_request_no
    assert deliver_coupon(coupon_id) is CouponStatus.SENT
    db_session.refresh(coupon)
    assert coupon.out_request_no == key
    mine = [c for c in shop.sandbox.world.state.coupons.values() if c.openid == shop.openid]
    assert [c.coupon_id for c in mine] == [coupon.wechat_coupon_id]  # one coupon at WeChat
    ledger_clean()


def test_a_refused_send_releases_the_reservation(marketing: Marketing, db_session: Session) -> None:
    shop = marketing.shop
    accounts = campaign_accounts(shop.merchant.id, marketing.campaign_id)
    coupon_id = _issue(marketing, "f2")
    assert accounts.reserved.balance.fen == WORST_CASE
    shop.sandbox.post(
        "/faults", {"api": "v3.favor_send", "mode": "error", "code": "PARAM_ERROR", "status": 400}
    )
    assert deliver_coupon(coupon_id) is CouponStatus.FAILED
    assert accounts.reserved.balance.fen == 0 and accounts.budget.balance.fen == 100000
    coupon = db_session.get(Coupon, coupon_id)
    assert coupon is not None and coupon.last_error and coupon.last_error.startswith("PARAM_ERROR")
    ledger_clean()


def test_duplicated_and_retried_coupon_use_books_once(
    marketing: Marketing, app: Flask, db_session: Session
) -> None:
    shop = marketing.shop
    shop.sandbox.post(f"/merchants/{shop.merchant.mchid}/settings", {"duplicate_notifications": True})
    coupon_id = _issue(marketing, "f3")
    assert deliver_coupon(coupon_id) is CouponStatus.SENT
    # Every notification is delivered twice (WeChat's duplicates), and the clock runs past the retries.
    order = shop.register("FAULT-2", 6000)
    shop.pay(order["id"])
    shop.sandbox.post("/clock/advance", {"seconds": 600})
    coupon = db_session.get(Coupon, coupon_id)
    assert coupon is not None and coupon.status is CouponStatus.USED
    assert merchant_accounts(shop.merchant.id).rebate.balance.fen == 1000 + 600
    listed = shop.sandbox.get("/notifications?event_type=COUPON.USE")
    uses = listed["notifications"] if isinstance(listed, dict) else listed
    assert len(uses) == 1 and any(a["kind"] == "duplicate" for a in uses[0]["attempts"])
    ledger_clean()


def test_coupon_callbacks_pointed_at_the_payment_url_are_applied_there(
    marketing: Marketing, app: Flask, db_session: Session
) -> None:
    # A merchant may point the favor callbacks at its payment notification URL: COUPON.USE is applied there.
    shop = marketing.shop
    coupon_id = _issue(marketing, "f4")
    assert deliver_coupon(coupon_id) is CouponStatus.SENT
    shop.sandbox.post(f"/merchants/{shop.merchant.mchid}/settings", {"coupon_notify_url": None})
    order = shop.register("FAULT-PAY-URL", 6000)
    shop.pay(order["id"])
    listed = shop.sandbox.get(f"/notifications?owner={shop.merchant.mchid}")["notifications"]
    assert not any(n["event_type"] == "COUPON.USE" for n in listed)  # nowhere to go
    coupon = db_session.get(Coupon, coupon_id)
    assert coupon is not None and coupon.status is CouponStatus.SENT
    resource = shop.sandbox.get("/users/alice/card-pack")["vouchers"][0] | {
        "consume_information": {"transaction_id": db_session.get(Order, order["id"]).transaction_id}  # type: ignore[union-attr]
    }
    headers, body = shop.forger.signed(resource, event_type="COUPON.USE")
    assert shop.notify(headers, body).status_code == 204
    db_session.refresh(coupon)
    assert coupon.status is CouponStatus.USED and coupon.booked_at is not None
    assert merchant_accounts(shop.merchant.id).rebate.balance.fen == 1000 + 600
    ledger_clean()


def test_a_voucher_whose_send_was_lost_is_booked_when_its_use_comes_back(
    marketing: Marketing, app: Flask, db_session: Session
) -> None:
    """WeChat delivered the voucher but our send timed out; the user spends it before the resend sweep ran.
    The first COUPON.USE is answered "retry later" while the send is re-made with its key; WeChat's next
    delivery finds the coupon known and books it once."""
    from tests.coupons.conftest import run_jobs

    shop = marketing.shop
    coupon_id = _issue(marketing, "f5")
    shop.sandbox.post("/faults", {"api": "v3.favor_send", "mode": "accept_then_error", "count": 1})
    with pytest.raises(WeChatError):
        deliver_coupon(coupon_id)
    order = shop.register("LOST-1", 6000)
    paid = shop.pay(order["id"])
    assert paid["amount"]["payer_total"] == 5000  # WeChat applied the voucher it holds
    [use] = shop.sandbox.get("/notifications?event_type=COUPON.USE")["notifications"]
    assert use["state"] != "delivered" and use["attempts"][0]["status"] == 503
    coupon = db_session.get(Coupon, coupon_id)
    assert coupon is not None and coupon.status is CouponStatus.RESERVED
    assert merchant_accounts(shop.merchant.id).rebate.balance.fen == 0

    # The send queued at issue and the re-send the use asked for: the same key, one coupon learned.
    assert run_jobs("jobs.coupons.send_coupon") == 2
    shop.sandbox.post("/clock/advance", {"seconds": 70})  # WeChat delivers the use again

    db_session.refresh(coupon)
    assert (coupon.status, coupon.order_id) == (CouponStatus.USED, order["id"])
    assert merchant_accounts(shop.merchant.id).rebate.balance.fen == 1000 + 600
    shop.sandbox.post("/clock/advance", {"seconds": 600})
    assert merchant_accounts(shop.merchant.id).rebate.balance.fen == 1000 + 600
    ledger_clean()
