"""Pools through the HTTP API: the console creates, opens, closes and reads a pool; consumers grab; a
grabbed packet is spent (two-way legs booked, stats count it); the close gives back the unclaimed part;
fission tiers are paid once per tier."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from app.auth.principals import Role
from app.core.db import utcnow
from app.extensions import db
from app.ledger.models import AccountKind
from app.pools.models import PoolStatus, PoolTierReward, SplitKind
from app.pools.service import close_due
from app.red_packets.models import RedPacket, RedPacketStatus
from app.red_packets.service import expire_red_packets
from jobs.pools import reward_tiers
from tests.console_client import Console
from tests.factories import make_staff
from tests.pools.helpers import RULES, crowd, grab, grants, open_pool, pool_row
from tests.races.conftest import Race


def operator(race: Race) -> Console:
    with race.context():
        from app.merchants.models import Merchant

        merchant = db.session.get(Merchant, race.merchant_id)
        staff = make_staff(merchant=merchant, role=Role.OPERATOR)
        db.session.commit()
        email = staff.email
    return Console(race.app.test_client(), race.slug).login(email)


def _pool_body(campaign_id: int, **overrides: Any) -> dict[str, Any]:
    now = utcnow()
    return {
        "campaign_id": campaign_id,
        "name": "双十二拼手气",
        "split": "random",
        "total_fen": 5000,
        "count": 10,
        "starts_at": (now - timedelta(minutes=1)).isoformat(),
        "ends_at": (now + timedelta(hours=2)).isoformat(),
        "min_spend_fen": 5000,
        "valid_days": 7,
        "issuer_rate_bp": 1000,
        "buyer_rate_bp": 500,
        "max_order_fen": 100_000,
    } | overrides


def test_console_creates_opens_and_closes_a_pool_reserving_then_giving_back(race: Race) -> None:
    campaign_id = race.campaign(RULES, budget_fen=100_000)
    console = operator(race)
    created = console.post("/api/console/v1/pools", json=_pool_body(campaign_id, max_order_fen=10_000))
    assert created.status_code == 201, created.json
    pool_id = created.json["id"]
    assert created.json["status"] == "draft" and created.json["reserved_fen"] == 0
    assert race.balance(AccountKind.CAMPAIGN_BUDGET, campaign_id) == 100_000

    opened = console.post(f"/api/console/v1/pools/{pool_id}/open")
    assert opened.status_code == 200, opened.json
    # The total plus each share's two legs at their worst: 10 × (10 % + 5 %) × ¥100.
    worst = 5000 + 10 * (1_000 + 500)
    assert opened.json["reserved_fen"] == worst
    assert race.balance(AccountKind.CAMPAIGN_BUDGET, campaign_id) == 100_000 - worst
    assert race.balance(AccountKind.CAMPAIGN_RESERVED, campaign_id) == worst
    again = console.post(f"/api/console/v1/pools/{pool_id}/open")
    assert again.status_code == 409 and again.json["error"]["code"] == "pool_closed"

    buyers = crowd(race, 4)
    answers = [grab(race, buyer, pool_id) for buyer in buyers]
    assert [a.status for a in answers] == [201] * 4
    grabbed = sum(a.body["amount_fen"] for a in answers)
    shown = race.get(f"/api/mp/v1/pools/{pool_id}", headers=race.mp_headers(buyers[0]))
    assert shown.status == 200 and shown.body["shares_left"] == 6
    assert shown.body["my_grant"]["amount_fen"] == answers[0].body["amount_fen"]
    left = race.get(f"/api/mp/v1/pools/{pool_id}/left", headers=race.mp_headers(buyers[1]))
    assert left.status == 200 and left.body == {"pool_id": pool_id, "shares_left": 6}

    closed = console.post(f"/api/console/v1/pools/{pool_id}/close")
    assert closed.status_code == 200 and closed.json["status"] == "closed"
    # What the four packets hold stays reserved; the rest is back in the budget.
    held = grabbed + 4 * 1_500
    assert closed.json["released_fen"] == worst - held
    assert race.balance(AccountKind.CAMPAIGN_RESERVED, campaign_id) == held
    assert race.balance(AccountKind.CAMPAIGN_BUDGET, campaign_id) == 100_000 - held

    stats = console.get(f"/api/console/v1/pools/{pool_id}/stats").json
    best = max(answers, key=lambda a: a.body["amount_fen"])
    assert stats["grabbed"] == 4 and stats["grabbed_fen"] == grabbed
    assert stats["unclaimed"] == 6 and stats["unclaimed_fen"] == 5000 - grabbed
    assert stats["best_luck_fen"] == best.body["amount_fen"]
    listed = console.get("/api/console/v1/pools").json
    assert [p["id"] for p in listed] == [pool_id]
    late = grab(race, crowd(race, 1)[0], pool_id)
    assert late.status == 409 and late.code == "pool_closed"
    # The packets expire as any red packet: their reservation goes back too.
    with race.context():
        assert expire_red_packets(now=utcnow() + timedelta(days=8)) == 4
        db.session.commit()
    assert race.balance(AccountKind.CAMPAIGN_RESERVED, campaign_id) == 0
    assert race.balance(AccountKind.CAMPAIGN_BUDGET, campaign_id) == 100_000
    assert race.violations() == set()


def test_a_grabbed_packet_spent_books_its_legs_and_counts_in_the_stats(race: Race) -> None:
    campaign_id = race.campaign(RULES, budget_fen=200_000)
    console = operator(race)
    pool_id = console.post("/api/console/v1/pools", json=_pool_body(campaign_id, split="fixed")).json["id"]
    assert console.post(f"/api/console/v1/pools/{pool_id}/open").status_code == 200
    buyer = race.buyer()
    won = grab(race, buyer, pool_id)
    assert won.status == 201 and won.body["amount_fen"] == 500
    order_id, _ = race.register(buyer, 12_000)
    prepay = race.pay(buyer, order_id, won.body["red_packet_id"])
    assert prepay.status == 200, str(prepay)
    paid = race.user_pays(race.out_trade_nos(order_id)[0])
    assert paid.ok, str(paid)
    with race.context():
        packet = db.session.get(RedPacket, won.body["red_packet_id"])
        assert packet is not None and packet.status is RedPacketStatus.REDEEMED and packet.reserved.fen == 0
    # The buyer's 5 % leg of the ¥120 order is pending in their wallet.
    assert race.wallet(buyer.consumer_id)["pending"] == 600
    stats = console.get(f"/api/console/v1/pools/{pool_id}/stats").json
    assert stats["redeemed"] == 1 and stats["gmv_driven_fen"] == 12_000
    assert stats["redemption_rate_bp"] == 10_000
    assert race.violations() == set()


def test_the_window_end_closes_the_pool_by_the_sweep(race: Race) -> None:
    campaign_id = race.campaign(RULES, budget_fen=100_000)
    pool_id = open_pool(race, campaign_id, total_fen=1000, count=10)
    assert grab(race, crowd(race, 1)[0], pool_id).status == 201
    with race.context():
        assert close_due(now=utcnow() + timedelta(hours=2)) == 1
        assert close_due(now=utcnow() + timedelta(hours=2)) == 0
    pool = pool_row(race, pool_id)
    assert pool.status is PoolStatus.CLOSED
    assert pool.released.fen == 1000 - grants(race, pool_id)[0].amount.fen
    assert race.violations() == set()


def test_fission_friends_through_a_share_link_unlock_the_ladder_once_per_tier(race: Race) -> None:
    campaign_id = race.campaign(RULES, budget_fen=100_000)
    ladder = [{"friends": 2, "reward_fen": 100}, {"friends": 3, "reward_fen": 300}]
    pool_id = open_pool(race, campaign_id, total_fen=2000, count=20, ladder=ladder)
    sharer, *friends = crowd(race, 5)
    mine = grab(race, sharer, pool_id)
    token = mine.body["share_token"]
    opened = race.post(
        f"/api/mp/v1/pools/{pool_id}/share-opens",
        json={"share_token": token},
        headers=race.mp_headers(friends[0]),
    )
    assert opened.status == 204
    # A sharer's own token counts nothing for them; a forged one is ignored.
    assert grab(race, friends[0], pool_id, token=token + "x").status == 201
    for friend in friends[1:4]:
        assert grab(race, friend, pool_id, token=token).status == 201
    assert race.call(reward_tiers, pool_id, sharer.consumer_id).value == 2
    assert race.call(reward_tiers, pool_id, sharer.consumer_id).value == 0  # each tier once
    with race.context():
        rewards = list(db.session.scalars(select(PoolTierReward).order_by(PoolTierReward.tier)))
        assert [(r.tier, r.amount.fen, r.sharer_id) for r in rewards] == [
            (1, 100, sharer.consumer_id),
            (2, 300, sharer.consumer_id),
        ]
        packets = db.session.scalars(
            select(RedPacket.face_value).where(RedPacket.consumer_id == sharer.consumer_id)
        ).all()
        assert sorted(p.fen for p in packets) == sorted([mine.body["amount_fen"], 100, 300])
    stats = race.get(f"/api/mp/v1/pools/{pool_id}", headers=race.mp_headers(sharer))
    assert stats.body["share_token"] == token
    with race.context():
        from app.pools.fission import funnel

        assert funnel(pool_id) == [{"sharer_id": sharer.consumer_id, "opens": 1, "grabs": 3, "tier": 2}]
    assert race.violations() == set()


def test_a_share_token_is_a_serializer_token_of_pool_and_grabber(race: Race) -> None:
    """The grab's answer signs its token without the serializer's general path, for speed: what it makes
    must be a token the serializer verifies as ``[pool, grabber]`` under the share salt (as links shared
    before are), and under nothing else."""
    from itsdangerous import BadSignature, URLSafeSerializer

    campaign_id = race.campaign(RULES, budget_fen=100_000)
    pool_id = open_pool(race, campaign_id, total_fen=2000, count=20)
    (grabber,) = crowd(race, 1)
    token = grab(race, grabber, pool_id).body["share_token"]
    secret = race.app.config["SECRET_KEY"]
    serializer = URLSafeSerializer(secret, salt="hongli.pool-share")
    assert serializer.loads(token) == [pool_id, grabber.consumer_id]
    with race.context():
        from app.pools.fission import sharer_of, token_for

        for pool, consumer in ((1, 2), (pool_id, 10**15), (2**62, 7)):
            made = token_for(pool, consumer)
            assert made == token_for(pool, consumer)
            assert serializer.loads(made) == [pool, consumer]
        # A token the serializer made (a link shared before) names its sharer as one made here does.
        assert sharer_of(serializer.dumps([pool_id, grabber.consumer_id]), pool_id=pool_id, grabber_id=0) == (
            grabber.consumer_id
        )
    for other in (
        URLSafeSerializer(secret, salt="another-salt"),
        URLSafeSerializer("x" * 32, salt="hongli.pool-share"),
    ):
        try:
            other.loads(token)
        except BadSignature:
            continue
        raise AssertionError("a share token verified under another key")


def test_a_cash_share_is_paid_to_wechat_change_once_on_the_payout_rails(race: Race) -> None:
    from app.core.money import Money
    from app.pools.models import PoolPayout
    from app.withdrawals.models import Withdrawal
    from jobs.payouts import process_payout
    from jobs.pools import pay_cash_share

    race.configure(withdrawal_min=Money(100), withdrawal_auto_approve_max=Money(100_000))
    campaign_id = race.campaign(RULES, budget_fen=10_000)
    pool_id = open_pool(
        race, campaign_id, total_fen=3000, count=3, split=SplitKind.FIXED, payout=PoolPayout.CASH
    )
    buyer = race.buyer()
    won = grab(race, buyer, pool_id)
    assert won.status == 201 and won.body["amount_fen"] == 1000 and won.body["red_packet_id"] is None
    grant_id = won.body["grant_id"]
    assert race.violations() == set()  # granted, not paid yet: the pool still holds its part
    assert race.call(pay_cash_share, grant_id).value is True
    assert race.call(pay_cash_share, grant_id).value is False  # exactly once
    assert race.wallet(buyer.consumer_id)["withdrawing"] == 1000
    with race.context():
        withdrawal = db.session.scalar(
            select(Withdrawal).where(Withdrawal.idempotency_key == f"pool-cash:{grant_id}")
        )
        assert withdrawal is not None and withdrawal.payout_id is not None
        payout_id = withdrawal.payout_id
    assert race.call(process_payout, payout_id).ok
    for bill in race.sandbox.get("/state/transfer_bills")["transfer_bills"]:
        if bill["openid"] == buyer.openid and bill["state"] == "WAIT_USER_CONFIRM":
            race.sandbox.post(f"/transfer-bills/{bill['out_bill_no']}/confirm", {"mchid": race.mchid})
    assert race.call(process_payout, payout_id).ok
    paid = [
        p["amount_fen"]
        for p in race.sandbox.get(f"/payouts?mchid={race.mchid}")["payouts"]
        if p["openid"] == buyer.openid and p["paid"]
    ]
    assert paid == [1000]
    assert race.wallet(buyer.consumer_id) == {"available": 0, "pending": 0, "withdrawing": 0, "debt": 0}
    # Closing gives back the two shares nobody grabbed.
    assert race.call(service_close, merchant_id=race.merchant_id, pool_id=pool_id).ok
    assert pool_row(race, pool_id).released.fen == 2000
    assert race.balance(AccountKind.CAMPAIGN_RESERVED, campaign_id) == 0
    assert race.balance(AccountKind.CAMPAIGN_BUDGET, campaign_id) == 9000
    assert race.violations() == set()


def service_close(*, merchant_id: int, pool_id: int) -> object:
    from app.audit.service import CLI
    from app.pools.service import close_pool

    return close_pool(merchant_id=merchant_id, pool_id=pool_id, actor=CLI)


def test_the_reconcile_command_gives_back_a_take_whose_commit_never_happened(race: Race) -> None:
    from app.pools import hot

    campaign_id = race.campaign(RULES, budget_fen=100_000)
    pool_id = open_pool(race, campaign_id, total_fen=1000, count=10)
    assert grab(race, crowd(race, 1)[0], pool_id).status == 201
    lost = crowd(race, 1)[0]
    with race.context():
        # The Redis step of a grab whose process died before its commit.
        taken, _ = hot.take(hot.Ref(race.merchant_id, pool_id), lost.consumer_id)
        assert isinstance(taken, hot.Share)
    runner = race.app.test_cli_runner()
    # Flask's CLI runs in whatever app context is current: make it this race's app (its database).
    with race.context():
        # A grab leaves its in-flight entry for reconciliation: the committed grab's entry is cleared (its
        # grant is in PostgreSQL), the lost take's is within the grace period: left alone.
        assert len(hot.snapshot(hot.Ref(race.merchant_id, pool_id)).flight) == 2
        young = runner.invoke(args=["pools", "reconcile"])
    assert young.exit_code == 0, young.output
    assert f"pool {pool_id}: 1 final, 0 given back" in young.output
    with race.context():
        assert list(hot.snapshot(hot.Ref(race.merchant_id, pool_id)).flight) == [taken.seq]
    with race.context():
        result = runner.invoke(args=["pools", "reconcile", "--grace-ms", "0"])
    assert result.exit_code == 0, result.output
    assert f"pool {pool_id}: 0 final, 1 given back" in result.output
    assert "pools agree: 1 open pool(s)" in result.output
    again = grab(race, lost, pool_id)
    assert again.status == 201 and again.body["amount_fen"] == taken.fen
    assert len(grants(race, pool_id)) == 2
    assert race.violations() == set()
