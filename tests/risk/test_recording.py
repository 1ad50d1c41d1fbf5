"""What a decision writes, now in one statement with its links and hold: the order's client as the script
read it, the hold pointing at its decision, groups merged by a shared payer — and an order whose client
was kept in the older format (before the script read it) still decided with that client."""

from __future__ import annotations

from flask import Flask
from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.consumers.models import ConsumerStatus
from app.core.db import utcnow
from app.risk import Client, judge_paid_order, remember_order_client
from app.risk.clients import digest, verified_device
from app.risk.counters import key_prefix
from app.risk.links import group_of
from app.risk.models import Action, LinkKind, Outcome, RiskDecision, RiskHold, RiskLink
from tests.factories import make_consumer, make_merchant
from tests.payments.conftest import Shop
from tests.risk.conftest import device_token, enforce, person


def _decisions(db_session: Session, consumer_id: int) -> list[RiskDecision]:
    return list(
        db_session.scalars(
            select(RiskDecision)
            .where(RiskDecision.consumer_id == consumer_id, RiskDecision.action == Action.REWARD)
            .order_by(RiskDecision.id)
            .execution_options(populate_existing=True)
        )
    )


def test_a_paid_orders_decision_records_its_client_and_its_hold_points_at_it(
    shop: Shop, campaign: int, db_session: Session
) -> None:
    token = device_token(shop.client)
    erin = person(shop, "erin", ip="198.51.100.50", device=token)
    order = erin.order("ERIN-1", 20000)  # no trail: held
    [decision] = _decisions(db_session, erin.consumer_id)
    device_id = verified_device(token)
    assert device_id is not None
    assert (decision.outcome, decision.reasons, decision.ip, decision.device, decision.reference) == (
        Outcome.HOLD,
        ["no_trail"],
        "198.51.100.50",
        digest("device", device_id),
        f"order:{order}",
    )
    # The script read the IP's first-seen rank from the client it found (the keys it named itself).
    assert decision.scores["rank_ip"] == 0 and "enforced" not in decision.facts
    hold = db_session.scalar(select(RiskHold).where(RiskHold.order_id == order))
    assert hold is not None and (hold.decision_id, hold.reasons) == (decision.id, ["no_trail"])
    kinds = db_session.scalars(
        select(RiskLink.kind).where(RiskLink.consumer_id == erin.consumer_id).order_by(RiskLink.kind)
    ).all()
    assert kinds == [LinkKind.DEVICE, LinkKind.PAYER]


def test_a_shared_payer_joins_two_accounts_in_the_decisions_own_statement(
    app: Flask, db_session: Session, redis: Redis
) -> None:
    merchant = make_merchant("shared-payer")
    enforce(merchant.id)
    first, second = make_consumer(merchant).id, make_consumer(merchant).id
    verdicts = [
        judge_paid_order(
            merchant_id=merchant.id,
            consumer_id=consumer_id,
            order_id=90_000 + n,
            related=set(),
            claims=0,
            payer="o-one-wechat-account",
            paid_at=utcnow(),
            rewarded=False,  # made-up order ids: nothing to hold
        )
        for n, consumer_id in enumerate((first, second))
    ]
    assert "shared_payer" not in verdicts[0].decision.reasons
    assert "shared_payer" in verdicts[1].decision.reasons
    assert group_of(merchant_id=merchant.id, consumer_id=second) == (first, [first, second])
    assert redis.get(f"{key_prefix(merchant.id)}:gsize:{first}") == f"{first}:2".encode()
    assert db_session.scalar(select(RiskHold.id).where(RiskHold.merchant_id == merchant.id)) is None


def test_an_order_client_kept_in_the_older_format_is_still_read(
    app: Flask, db_session: Session, redis: Redis
) -> None:
    merchant = make_merchant("older-client")
    enforce(merchant.id)
    consumers = [make_consumer(merchant).id for _ in range(2)]
    device = digest("device", "an-older-phone")
    for n, consumer_id in enumerate(consumers):
        # What the pay endpoint stored before the script read the client itself: "ip|device|consumer".
        redis.set(f"{key_prefix(merchant.id)}:oc:{91_000 + n}", f"203.0.113.7|{device}|{consumer_id}")
        judge_paid_order(
            merchant_id=merchant.id,
            consumer_id=consumer_id,
            order_id=91_000 + n,
            related=set(),
            claims=1,
            payer=None,
            paid_at=utcnow(),
            rewarded=False,
        )
    later = _decisions(db_session, consumers[1])[0]
    assert (later.ip, later.device) == ("203.0.113.7", device)
    # Counted against that IP (its second new account today) and linked by that device: one group of two.
    assert later.scores["rank_ip"] == 1
    assert group_of(merchant_id=merchant.id, consumer_id=consumers[1]) == (consumers[0], consumers)


def test_a_banned_buyers_order_is_blocked_and_recorded_with_its_client(
    app: Flask, db_session: Session, redis: Redis
) -> None:
    merchant = make_merchant("banned-buyer")
    enforce(merchant.id)
    consumer = make_consumer(merchant)
    consumer.status = ConsumerStatus.BANNED
    db_session.flush()
    remember_order_client(
        merchant_id=merchant.id,
        consumer_id=consumer.id,
        order_id=92_000,
        client=Client(ip="203.0.113.9", device="a-banned-phone", device_sent=True),
    )
    verdict = judge_paid_order(
        merchant_id=merchant.id,
        consumer_id=consumer.id,
        order_id=92_000,
        related=set(),
        claims=1,
        payer=None,
        paid_at=utcnow(),
        rewarded=False,
    )
    assert (verdict.decision.outcome, verdict.claims_allowed) == (Outcome.BLOCK, False)
    [row] = _decisions(db_session, consumer.id)
    assert (row.outcome, row.reasons, row.ip) == (Outcome.BLOCK, ["banned"], "203.0.113.9")
