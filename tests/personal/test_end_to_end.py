"""The seed's personal play end to end through the sandbox (issue 12, done-when 2): alice pays ¥20 for bob
(JSAPI, the sandbox pays and notifies); bob claims it; bob spends ¥120 with it; alice's 10% rebate is booked
pending and settles after the after-sales window (development clock); a second packet left unclaimed is
refunded to alice after 24 h (sandbox refund notification). The ledger check is clean after every step."""

from __future__ import annotations

from collections.abc import Iterator

import click.testing
import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.clock import dev_clock
from app.core.db import utcnow
from app.ledger.accounts import campaign_accounts, merchant_accounts, platform_account, prepaid_account
from app.ledger.models import AccountKind
from app.orders.models import Order
from app.payments.models import Refund, RefundStatus
from app.rebates.models import GrantStatus, RebateGrant
from app.reviews.models import ReviewItem, ReviewStatus
from tests.personal.conftest import SENDER_WORST_CASE, Personal, ledger_clean
from tests.worker import run_jobs


@pytest.fixture(autouse=True)
def real_time_afterwards(app: Flask) -> Iterator[None]:
    """Business time is left as found (the app is shared by the whole run)."""
    yield
    clock = dev_clock(app)
    assert clock is not None
    clock.reset()


def _dev(app: Flask, *args: str) -> click.testing.Result:
    result = app.test_cli_runner().invoke(args=["dev", *args])
    assert result.exit_code == 0, result.output
    return result


def test_pay_claim_spend_rebate_settle_and_refund_the_unclaimed(
    personal: Personal, app: Flask, db_session: Session
) -> None:
    shop, bob = personal.shop, personal.bob
    merchant_id, alice = shop.merchant.id, shop.consumer_id
    campaign = campaign_accounts(merchant_id, personal.campaign_id)
    clearing = platform_account(AccountKind.WECHAT_CLEARING, merchant_id)
    budget_before = campaign.budget.balance.fen

    # Alice pays ¥20 with JSAPI: the money is her prepaid balance, not a purchase and not the budget.
    packet = personal.funded(message="你赢了, 步数挑战")
    order = db_session.get(Order, packet_funding_order(db_session, packet["id"]))
    assert order is not None and order.out_order_no == f"personal:{packet['id']}"
    assert prepaid_account(merchant_id, alice).balance.fen == 2000
    assert clearing.balance.fen == -2000
    assert db_session.scalars(select(RebateGrant).where(RebateGrant.order_id == order.id)).all() == []
    assert campaign.budget.balance.fen == budget_before
    mine = shop.client.get("/api/mp/v1/personal-packets", headers=personal.headers()).json
    assert [(p["id"], p["role"], p["status"]) for p in mine] == [(packet["id"], "sent", "funded")]
    share_code = mine[0]["share_code"]
    ledger_clean()

    # Bob claims it with the shared link: an in-app red packet of his, issued by alice.
    claimed = personal.claim(packet["id"], bob, share_code)
    assert claimed.status_code == 200, claimed.json
    assert (claimed.json["status"], claimed.json["friend_id"]) == ("claimed", bob.consumer_id)
    red = shop.client.get("/api/mp/v1/red-packets", headers=personal.headers(bob)).json
    assert [(r["id"], r["face_value_fen"], r["status"]) for r in red] == [
        (claimed.json["red_packet_id"], 2000, "issued")
    ]
    assert prepaid_account(merchant_id, alice).balance.fen == 0
    # The face value is alice's money held in the reserve; her rebate's worst case comes from the budget.
    assert campaign.reserved.balance.fen == 2000 + SENDER_WORST_CASE
    assert campaign.budget.balance.fen == budget_before - SENDER_WORST_CASE
    received = shop.client.get("/api/mp/v1/personal-packets", headers=personal.headers(bob)).json
    assert [(p["role"], p["share_code"]) for p in received] == [("received", None)]
    ledger_clean()

    # Bob spends ¥120 with it: he pays ¥100; the merchant gets alice's ¥20; alice earns 10% of ¥120.
    spend = shop.client.post(
        "/api/shop/v1/orders",
        headers=shop.shop_headers,
        json={
            "out_order_no": "BOB-GEAR-1",
            "consumer": {"openid": bob.openid},
            "total_fen": 12000,
            "items": [
                {"sku": "RUN-1", "name": "跑鞋", "category": "sports", "quantity": 1, "unit_price_fen": 12000}
            ],
        },
    )
    assert spend.status_code == 201, spend.json
    pay = shop.client.post(
        f"/api/mp/v1/orders/{spend.json['id']}/pay",
        json={"red_packet_id": claimed.json["red_packet_id"]},
        headers=personal.headers(bob),
    )
    assert pay.status_code == 200, pay.json
    assert (pay.json["payable_fen"], pay.json["discount_fen"]) == (10000, 2000)
    shop.sandbox.post(
        f"/transactions/{pay.json['sandbox']['out_trade_no']}/pay", {"mchid": shop.merchant.mchid}
    )
    grants = db_session.scalars(
        select(RebateGrant).where(RebateGrant.order_id == spend.json["id"]).order_by(RebateGrant.id)
    ).all()
    assert sorted((g.beneficiary, g.consumer_id, g.amount.fen, g.status) for g in grants) == [
        ("issuer_consumer", alice, 1200, GrantStatus.PENDING),
        ("red_packet_discount", None, 2000, GrantStatus.AVAILABLE),
    ]
    assert (personal.wallet()["pending_fen"], personal.wallet()["available_fen"]) == (1200, 0)
    assert campaign.reserved.balance.fen == 0
    assert campaign.budget.balance.fen == budget_before - 1200  # only alice's rebate cost the merchant
    assert merchant_accounts(merchant_id).rebate.balance.fen == 2000
    timeline = shop.client.get("/api/mp/v1/wallet/entries", headers=personal.headers()).json
    assert [(line["bucket"], line["amount_fen"]) for line in timeline["lines"]] == [
        ("pending", 1200),
        ("prepaid", -2000),
        ("prepaid", 2000),
    ]
    assert [(p["id"], p["role"], p["status"]) for p in timeline["personal_packets"]] == [
        (packet["id"], "sent", "claimed")
    ]
    bobs = shop.client.get("/api/mp/v1/wallet/entries", headers=personal.headers(bob)).json
    assert bobs["lines"] == []  # nothing of his moved: the packet was alice's money
    assert [(p["id"], p["role"], p["amount_fen"]) for p in bobs["personal_packets"]] == [
        (packet["id"], "received", 2000)
    ]
    ledger_clean()

    # Received; the 7-day after-sales window passes on the development clock: alice's rebate settles.
    done = shop.client.post(
        "/api/shop/v1/orders/BOB-GEAR-1/events",
        headers=shop.shop_headers,
        json={"type": "received", "occurred_at": utcnow().isoformat()},
    )
    assert done.status_code == 200, done.json
    assert "settle-rebates: 0" in _dev(app, "clock", "advance", "6d").output
    assert "settle-rebates: 1" in _dev(app, "clock", "advance", "2d").output
    db_session.expire_all()
    personal.sign_in_again()
    assert (personal.wallet()["pending_fen"], personal.wallet()["available_fen"]) == (0, 1200)
    ledger_clean()

    # A second packet nobody claims: after 24 h the sweep refunds the payment through WeChat.
    second = personal.funded(amount_fen=888)
    assert prepaid_account(merchant_id, alice).balance.fen == 888
    assert "refund-personal-packets: 0" in _dev(app, "clock", "advance", "23h").output
    assert personal.packet(second["id"])["status"] == "funded"
    assert "refund-personal-packets: 1" in _dev(app, "clock", "advance", "2h").output
    personal.sign_in_again()
    assert personal.packet(second["id"])["status"] == "refunding"
    late = personal.claim(second["id"], personal.bob, personal.packet(second["id"])["share_code"])
    assert (late.status_code, late.json["error"]["code"]) == (409, "packet_not_claimable")
    personal.resolve_refund(db_session, second["id"])
    db_session.expire_all()
    refunded = personal.packet(second["id"])
    assert refunded["status"] == "refunded" and refunded["refunded_at"]
    refund = db_session.scalars(
        select(Refund).where(Refund.out_refund_no == f"personal:{second['id']}")
    ).one()
    assert (refund.status, refund.amount.fen) == (RefundStatus.SUCCEEDED, 888)
    assert prepaid_account(merchant_id, alice).balance.fen == 0
    assert clearing.balance.fen == -2000  # the ¥8.88 came in and went back out
    ledger_clean()


def packet_funding_order(db_session: Session, packet_id: int) -> int:
    from app.personal.models import PersonalPacket

    packet = db_session.get(PersonalPacket, packet_id)
    assert packet is not None and packet.funding_order_id is not None
    return packet.funding_order_id


def test_a_claimed_packet_that_expires_unspent_goes_back_to_the_sender(
    personal: Personal, app: Flask, db_session: Session
) -> None:
    merchant_id, alice = personal.shop.merchant.id, personal.shop.consumer_id
    campaign = campaign_accounts(merchant_id, personal.campaign_id)
    budget_before = campaign.budget.balance.fen
    packet = personal.funded(amount_fen=1500)
    claimed = personal.claim(packet["id"], personal.bob, personal.packet(packet["id"])["share_code"])
    assert claimed.status_code == 200, claimed.json
    assert campaign.reserved.balance.fen == 1500 + SENDER_WORST_CASE

    # 30 days of validity pass: the red packet expires; its value returns to alice's prepaid balance (not
    # to the campaign), her rebate's reservation to the budget, and the sweep refunds her in WeChat.
    ran = _dev(app, "clock", "advance", "31d").output
    assert "expire-red-packets: 1" in ran and "refund-personal-packets: 1" in ran
    db_session.expire_all()
    assert campaign.reserved.balance.fen == 0
    assert campaign.budget.balance.fen == budget_before
    assert prepaid_account(merchant_id, alice).balance.fen == 1500
    personal.resolve_refund(db_session, packet["id"])
    db_session.expire_all()
    assert prepaid_account(merchant_id, alice).balance.fen == 0
    personal.sign_in_again()
    assert personal.packet(packet["id"])["status"] == "refunded"
    ledger_clean()


def _settle_refund(personal: Personal, db_session: Session, out_refund_no: str, status: str) -> Refund:
    """Submit the queued refund and have the sandbox end it with ``status`` (its REFUND.* notification)."""
    assert run_jobs("jobs.payments.submit_refund") == 1
    refund = db_session.scalars(select(Refund).where(Refund.out_refund_no == out_refund_no)).one()
    personal.shop.sandbox.post(
        f"/refunds/{refund.wechat_refund_no}/resolve",
        {"mchid": personal.shop.merchant.mchid, "status": status},
    )
    db_session.expire_all()
    return refund


def _open_reviews(db_session: Session, packet_id: int) -> list[str]:
    return list(
        db_session.scalars(
            select(ReviewItem.kind).where(
                ReviewItem.reference == f"personal_packet:{packet_id}",
                ReviewItem.status == ReviewStatus.OPEN,
            )
        )
    )


def test_a_refund_wechat_closes_is_asked_again_and_one_it_cannot_make_goes_to_a_person(
    personal: Personal, app: Flask, db_session: Session
) -> None:
    merchant_id, alice = personal.shop.merchant.id, personal.shop.consumer_id
    packet = personal.funded(amount_fen=700)
    assert "refund-personal-packets: 1" in _dev(app, "clock", "advance", "25h").output

    # WeChat closes the refund: the money stays alice's prepaid balance, and the next sweep asks again
    # under a new number.
    first = _settle_refund(personal, db_session, f"personal:{packet['id']}", "CLOSED")
    assert first.status is RefundStatus.CLOSED
    assert prepaid_account(merchant_id, alice).balance.fen == 700
    personal.sign_in_again()
    assert personal.packet(packet["id"])["status"] == "refunding"
    assert "refund-personal-packets: 1" in _dev(app, "clock", "advance", "1h").output
    # The second attempt: WeChat cannot return the money (ABNORMAL) — a person is asked, nothing retried.
    second = _settle_refund(personal, db_session, f"personal:{packet['id']}:2", "ABNORMAL")
    assert second.status is RefundStatus.ABNORMAL
    assert "refund-personal-packets: 0" in _dev(app, "clock", "advance", "1h").output
    assert _open_reviews(db_session, packet["id"]) == ["personal_refund_not_made"]
    assert "refund-personal-packets: 0" in _dev(app, "clock", "advance", "1h").output  # one review item
    assert _open_reviews(db_session, packet["id"]) == ["personal_refund_not_made"]
    assert prepaid_account(merchant_id, alice).balance.fen == 700
    ledger_clean()

    # The merchant settles it at WeChat (异常退款): REFUND.SUCCESS books it like any refund.
    personal.shop.sandbox.post(
        f"/refunds/{second.wechat_refund_no}/resolve",
        {"mchid": personal.shop.merchant.mchid, "status": "SUCCESS"},
    )
    db_session.expire_all()
    personal.sign_in_again()
    assert personal.packet(packet["id"])["status"] == "refunded"
    assert prepaid_account(merchant_id, alice).balance.fen == 0
    assert [r.status for r in db_session.scalars(select(Refund).order_by(Refund.id))][-2:] == [
        RefundStatus.CLOSED,
        RefundStatus.SUCCEEDED,
    ]
    ledger_clean()


def test_after_three_closed_refunds_a_person_is_asked(
    personal: Personal, app: Flask, db_session: Session
) -> None:
    merchant_id, alice = personal.shop.merchant.id, personal.shop.consumer_id
    packet = personal.funded(amount_fen=600)
    assert "refund-personal-packets: 1" in _dev(app, "clock", "advance", "25h").output
    numbers = [f"personal:{packet['id']}", f"personal:{packet['id']}:2", f"personal:{packet['id']}:3"]
    for n, number in enumerate(numbers):
        _settle_refund(personal, db_session, number, "CLOSED")
        started = "1" if n < len(numbers) - 1 else "0"
        assert f"refund-personal-packets: {started}" in _dev(app, "clock", "advance", "1h").output
    assert _open_reviews(db_session, packet["id"]) == ["personal_refund_not_made"]
    assert run_jobs("jobs.payments.submit_refund") == 0  # no fourth attempt
    personal.sign_in_again()
    assert personal.packet(packet["id"])["status"] == "refunding"
    assert prepaid_account(merchant_id, alice).balance.fen == 600
    ledger_clean()
