"""Fission-cash pools through the HTTP API and the WeChat sandbox: each grabbed share is paid as ONE
``sendgroupredpack`` of its amount to the grabber's official-account openid, exactly once (a lost answer,
duplicate jobs); a merchant whose account has no cash red packets gets the capability switched off and
the share paid once on the default rail (商家转账). The ledger checks are clean after each."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.auth.principals import Role
from app.core.db import utcnow
from app.extensions import db
from app.merchants.models import Merchant, PayoutRail
from app.payouts.models import PayoutStatus
from app.payouts.service import make_due
from app.withdrawals.models import Withdrawal
from jobs.payouts import process_payout
from jobs.pools import pay_cash_share
from tests.console_client import Console
from tests.factories import make_staff
from tests.pools.fission_helpers import (
    can_send_red_packets,
    fission_pool,
    follower,
    grabbed,
    payouts_of,
    sandbox_packets,
    sandbox_paid,
)
from tests.pools.helpers import RULES
from tests.races.conftest import Race


def _operator(race: Race) -> Console:
    with race.context():
        merchant = db.session.get(Merchant, race.merchant_id)
        staff = make_staff(merchant=merchant, role=Role.OPERATOR)
        db.session.commit()
        email = staff.email
    return Console(race.app.test_client(), race.slug).login(email)


def _body(campaign_id: int, **overrides: Any) -> dict[str, Any]:
    now = utcnow()
    return {
        "campaign_id": campaign_id,
        "name": "fission",
        "split": "fixed",
        "payout": "fission_cash",
        "fission_count": 5,
        "total_fen": 5000 * 4,
        "count": 4,
        "starts_at": (now - timedelta(minutes=1)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
        **overrides,
    }


def _pass(race: Race, payout_id: int) -> str:
    """One payout pass now (its backoff, if any, cut short), as the payout worker runs it."""
    assert race.call(make_due, payout_id).ok
    answer = race.call(process_payout, payout_id)
    assert answer.ok, str(answer)
    return str(answer.value)


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"fission_count": None}, "fission_count", "between 3 and 20"),
        ({"fission_count": 2}, "fission_count", "between 3 and 20"),
        ({"fission_count": 21}, "fission_count", "between 3 and 20"),
        ({"split": "random"}, "split", "fixed split"),
        ({"total_fen": 1499 * 4, "fission_count": 15}, "total_fen", "at least 1500 fen"),
        ({"total_fen": 60_001 * 4, "fission_count": 3}, "total_fen", "at most 60000 fen"),
        ({"payout": "cash"}, "fission_count", "only for payout fission_cash"),
        ({"buyer_rate_bp": 500}, "payout", "no two-way rates"),
    ],
)
def test_a_fission_pool_that_wechat_could_not_pay_is_refused_at_creation(
    race: Race, overrides: dict[str, Any], field: str, words: str
) -> None:
    campaign_id = race.campaign(RULES, budget_fen=1_000_000)
    console = _operator(race)
    refused = console.post("/api/console/v1/pools", json=_body(campaign_id, **overrides))
    assert refused.status_code == 422, refused.json
    assert refused.json["error"]["code"] == "validation_error"
    assert any(words in problem for problem in refused.json["error"]["details"]["fields"][field])
    assert console.get("/api/console/v1/pools").json == []  # nothing created


def test_a_fission_pool_is_created_with_its_group_size(race: Race) -> None:
    campaign_id = race.campaign(RULES, budget_fen=1_000_000)
    created = _operator(race).post("/api/console/v1/pools", json=_body(campaign_id))
    assert created.status_code == 201, created.json
    assert created.json["payout"] == "fission_cash" and created.json["fission_count"] == 5


def test_each_grab_is_paid_as_one_group_red_packet_exactly_once(race: Race) -> None:
    can_send_red_packets(race)
    pool_id = fission_pool(race, share_fen=3000, count=4, fission_count=3)
    first, first_openid = follower(race)
    second, second_openid = follower(race)
    grants = [grabbed(race, first, pool_id), grabbed(race, second, pool_id)]
    assert race.violations() == set()  # granted, not paid: the pool still holds the shares

    # RQ delivers at least once: the job twice for each grant pays each once.
    for grant_id in grants:
        assert race.call(pay_cash_share, grant_id).value is True
        assert race.call(pay_cash_share, grant_id).value is False
    (payout,) = payouts_of(race, first.consumer_id)
    assert (payout.source_type, payout.source_id) == ("pool_grant", grants[0])
    assert payout.rail is PayoutRail.CASH_RED_PACKET and payout.group_size == 3
    assert payout.amount.fen == 3000 and payout.fee.fen == 0 and payout.bill_no == f"HLP{payout.id:010d}"
    assert race.wallet(first.consumer_id)["withdrawing"] == 3000

    # WeChat creates the first packet but the answer is lost: the same number is queried, never resent
    # under a new one; a duplicate pass changes nothing.
    race.sandbox.post(
        "/faults",
        {"api": "v2.sendgroupredpack", "mode": "accept_then_error", "count": 1, "mchid": race.mchid},
    )
    assert _pass(race, payout.id) == "unknown"
    assert _pass(race, payout.id) == "accepted"
    assert _pass(race, payout.id) == "accepted"
    (second_payout,) = payouts_of(race, second.consumer_id)
    assert _pass(race, second_payout.id) == "accepted"
    assert race.call(process_payout, second_payout.id).value == "skipped"  # not due: a duplicate job

    for openid in (first_openid, second_openid):
        (packet,) = sandbox_packets(race, openid)
        assert packet["hb_type"] == "GROUP" and packet["total_num"] == 3
        assert packet["total_amount"] == 3000 and sum(packet["shares"]) == 3000
        assert min(packet["shares"]) >= 100  # WeChat: every packet of a group at least 1 yuan
    bills = [p["key"] for p in sandbox_paid(race)]
    assert sorted(bills) == sorted({payout.bill_no, second_payout.bill_no})  # one bill per grabber

    # The seed opens the first share: the payout has succeeded; friends open theirs afterwards.
    race.sandbox.post(f"/redpacks/{payout.bill_no}/open", {"mchid": race.mchid})
    assert _pass(race, payout.id) == "succeeded"
    opened = race.sandbox.post(f"/redpacks/{payout.bill_no}/friends-open", {"mchid": race.mchid, "count": 2})
    assert opened["status"] == "RECEIVED"
    assert race.call(process_payout, payout.id).value == "skipped"  # finished: nothing more
    assert race.wallet(first.consumer_id) == {"available": 0, "pending": 0, "withdrawing": 0, "debt": 0}
    (done,) = payouts_of(race, first.consumer_id)
    assert done.status is PayoutStatus.SUCCEEDED and done.submit_calls == 1 and done.attempt == 1

    # The second grabber never opens it: refunded by WeChat, the share back in their balance.
    race.sandbox.post(f"/redpacks/{second_payout.bill_no}/ignore", {"mchid": race.mchid})
    assert _pass(race, second_payout.id) == "failed"
    assert race.wallet(second.consumer_id)["available"] == 3000
    assert race.violations() == set()


@pytest.mark.parametrize("code", ["NO_AUTH", "PRODUCT_AUTHORITY_UNOPEN"])
def test_a_merchant_without_cash_red_packets_pays_the_share_once_by_transfer_bill(
    race: Race, code: str
) -> None:
    can_send_red_packets(race)
    race.sandbox.post(f"/merchants/{race.mchid}/cash-red-packets", {"enabled": False, "code": code})
    pool_id = fission_pool(race, share_fen=3000, count=4, fission_count=3)
    buyer, openid = follower(race)
    grant_id = grabbed(race, buyer, pool_id)
    assert race.call(pay_cash_share, grant_id).value is True
    (group,) = payouts_of(race, buyer.consumer_id)
    assert group.group_size == 3
    before = _operator(race).get("/api/console/v1/payouts/capabilities").json
    assert before == [
        {
            "product": "cash_red_packet",
            "enabled": None,
            "reason": None,
            "wechat_code": None,
            "detected_at": None,
        }
    ]

    # WeChat refuses the group packet for want of the product: off for the merchant, with the reason, and
    # the share goes to the default rail — one withdrawal keyed by the grant, one transfer bill.
    assert _pass(race, group.id) == "failed"
    shown = _operator(race).get("/api/console/v1/payouts/capabilities")
    assert shown.status_code == 200, shown.json
    (product,) = shown.json
    assert product["product"] == "cash_red_packet" and product["enabled"] is False
    assert product["wechat_code"] == code and code in product["reason"]
    refused, fallback = payouts_of(race, buyer.consumer_id)
    assert refused.status is PayoutStatus.FAILED and refused.failure_code == code
    assert fallback.rail is PayoutRail.TRANSFER_BILL and fallback.source_type == "withdrawal"
    assert fallback.amount.fen == 3000
    with race.context():
        withdrawal = db.session.get(Withdrawal, fallback.source_id)
        assert withdrawal is not None and withdrawal.idempotency_key == f"pool-cash:{grant_id}"
    # The grant's fallback is taken once: the job again changes nothing.
    assert race.call(pay_cash_share, grant_id).value is False
    assert race.call(process_payout, refused.id).value == "skipped"  # final: a duplicate job does nothing
    assert len(payouts_of(race, buyer.consumer_id)) == 2

    assert _pass(race, fallback.id) == "accepted"
    for bill in race.sandbox.get("/state/transfer_bills")["transfer_bills"]:
        if bill["out_bill_no"] == fallback.bill_no:
            race.sandbox.post(f"/transfer-bills/{bill['out_bill_no']}/confirm", {"mchid": race.mchid})
    assert _pass(race, fallback.id) == "succeeded"
    assert sandbox_packets(race, openid) == []  # no red packet was ever sent
    assert [(p["rail"], p["key"], p["amount_fen"]) for p in sandbox_paid(race)] == [
        ("transfer_bill", fallback.bill_no, 3000)
    ]
    assert race.wallet(buyer.consumer_id) == {"available": 0, "pending": 0, "withdrawing": 0, "debt": 0}

    # Known off now: the next grabber's share goes straight to the default rail, no group packet tried.
    later, _ = follower(race)
    assert race.call(pay_cash_share, grabbed(race, later, pool_id)).value is True
    (only,) = payouts_of(race, later.consumer_id)
    assert only.rail is PayoutRail.TRANSFER_BILL and only.group_size is None
    assert race.violations() == set()


def test_a_grabber_without_an_official_account_openid_is_paid_on_the_default_rail(race: Race) -> None:
    can_send_red_packets(race)
    pool_id = fission_pool(race, share_fen=3000, count=4, fission_count=3)
    buyer = race.buyer()  # signed in to the mini-program only: a red packet has nobody to pay
    grant_id = grabbed(race, buyer, pool_id)
    assert race.call(pay_cash_share, grant_id).value is True
    (payout,) = payouts_of(race, buyer.consumer_id)
    assert payout.rail is PayoutRail.TRANSFER_BILL and payout.group_size is None
    assert payout.openid == buyer.openid and payout.amount.fen == 3000
    with race.context():
        from app.pools.models import PoolGrant

        grant = db.session.get(PoolGrant, grant_id)
        assert grant is not None and grant.paid_at is not None and grant.fallback_at is not None
    assert race.violations() == set()


def test_the_ledger_check_names_a_pool_grant_payout_that_is_not_its_grants(race: Race) -> None:
    from sqlalchemy import update

    from app.core.money import Money
    from app.payouts.models import Payout

    can_send_red_packets(race)
    pool_id = fission_pool(race, share_fen=3000, count=4, fission_count=3)
    buyer, _ = follower(race)
    assert race.call(pay_cash_share, grabbed(race, buyer, pool_id)).value is True
    (payout,) = payouts_of(race, buyer.consumer_id)
    assert race.violations() == set()
    with race.context():
        db.session.execute(update(Payout).where(Payout.id == payout.id).values(group_size=None, fee=Money(1)))
        db.session.commit()
    found = {v for v in race.violations() if v.startswith("payouts.pool_grant_payouts_match_grants")}
    assert found == {
        f"payouts.pool_grant_payouts_match_grants: payout {payout.id} (created) of pool grant "
        f"{payout.source_id}: differs from its grant (merchant, consumer, amount, fee)"
    }


def _budget_fen(race: Race, pool_id: int) -> int:
    from app.ledger.accounts import campaign_accounts
    from app.pools.models import Pool

    with race.context():
        pool = db.session.get(Pool, pool_id)
        assert pool is not None
        return campaign_accounts(race.merchant_id, pool.campaign_id).budget.balance.fen


def _unopened(race: Race, grant_id: int) -> int | None:
    from app.pools.models import PoolGrant

    with race.context():
        grant = db.session.get(PoolGrant, grant_id)
        assert grant is not None
        return None if grant.unopened is None else grant.unopened.fen


def test_the_friends_unopened_packets_come_back_to_the_campaign_budget_once(race: Race) -> None:
    """Four fission packets: one with a friend's packet left unopened (WeChat gives it back to the merchant
    a day after sending: booked once from paid out to the campaign's budget), one all opened (0 recorded,
    nothing booked), one WeChat reports nothing about three days on (a person is asked; no more asking),
    one its seed never opened (WeChat refunded it whole: back in the grabber's balance, never asked)."""
    from sqlalchemy import update

    from app.core.money import Money
    from app.pools.cash import collect_unopened, unopened_due
    from app.pools.models import PoolGrant
    from app.reviews.models import ReviewItem

    can_send_red_packets(race)
    pool_id = fission_pool(race, share_fen=3000, count=4, fission_count=3)
    grabbers = [follower(race) for _ in range(4)]
    grants = [grabbed(race, buyer, pool_id) for buyer, _ in grabbers]
    payouts = []
    for grant_id, (buyer, _) in zip(grants, grabbers, strict=True):
        assert race.call(pay_cash_share, grant_id).value is True
        (payout,) = payouts_of(race, buyer.consumer_id)
        assert _pass(race, payout.id) == "accepted"
        payouts.append(payout)
    for payout in payouts[:3]:
        race.sandbox.post(f"/redpacks/{payout.bill_no}/open", {"mchid": race.mchid})
    race.sandbox.post(f"/redpacks/{payouts[0].bill_no}/friends-open", {"mchid": race.mchid, "count": 1})
    race.sandbox.post(f"/redpacks/{payouts[1].bill_no}/friends-open", {"mchid": race.mchid, "count": 2})
    race.sandbox.post(f"/redpacks/{payouts[3].bill_no}/ignore", {"mchid": race.mchid})
    assert [_pass(race, payout.id) for payout in payouts] == ["succeeded"] * 3 + ["failed"]
    assert race.wallet(grabbers[3][0].consumer_id)["available"] == 3000
    (packet,) = sandbox_packets(race, grabbers[0][1])
    left_unopened = packet["shares"][2]
    assert 100 <= left_unopened < 3000
    budget = _budget_fen(race, pool_id)
    assert race.violations() == set()

    # Within the day nothing is asked; a day on, WeChat has not given the unopened packet back yet.
    with race.context():
        assert unopened_due() == []
    later = utcnow() + timedelta(hours=25)
    with race.context():
        assert unopened_due(later) == grants[:3]
    answers = [race.call(collect_unopened, grant_id, later).value for grant_id in grants]
    assert answers == ["waiting", "all_opened", "waiting", "done"]
    assert [_unopened(race, grant_id) for grant_id in grants] == [None, 0, None, None]
    with race.context():  # asked within the hour: not again until it has passed
        assert unopened_due(later) == []
        assert unopened_due(later + timedelta(minutes=61)) == [grants[0], grants[2]]

    # Three days on, WeChat still reports the third's friends' packets unopened and no refund (its clock
    # has not moved): nothing booked, a person asked to compare with the merchant's statement, no more asks.
    end = utcnow() + timedelta(hours=74)
    assert race.call(collect_unopened, grants[2], end).value == "unknown"
    assert race.call(collect_unopened, grants[2], end).value == "done"
    with race.context():
        items = db.session.scalars(
            select(ReviewItem).where(ReviewItem.kind == "fission_unopened_unknown")
        ).all()
        assert [item.reference for item in items] == [f"pool_grant:{grants[2]}"]
        assert unopened_due(end) == [grants[0]]
    assert _unopened(race, grants[2]) is None and _budget_fen(race, pool_id) == budget

    # WeChat's day is over: the first packet's unopened part went back to the merchant; booked once.
    race.sandbox.post("/clock/advance", {"seconds": 25 * 3600})
    asked_again = later + timedelta(hours=2)
    assert race.call(collect_unopened, grants[0], asked_again).value == "booked"
    assert race.call(collect_unopened, grants[0], asked_again).value == "done"
    assert [_unopened(race, grant_id) for grant_id in grants] == [left_unopened, 0, None, None]
    assert _budget_fen(race, pool_id) == budget + left_unopened
    with race.context():
        assert unopened_due(end) == []
    assert race.violations() == set()

    # The check names a grant whose record and entry disagree.
    with race.context():
        db.session.execute(update(PoolGrant).where(PoolGrant.id == grants[1]).values(unopened=Money(50)))
        db.session.commit()
    found = {v for v in race.violations() if v.startswith("pools.fission_unopened_booked_once")}
    assert found == {
        f"pools.fission_unopened_booked_once: pool grant {grants[1]}: unopened 50 fen (share 3000 fen, "
        "group packet succeeded), entry None moving 0 fen into its campaign's budget and 0 fen out of paid out"
    }
