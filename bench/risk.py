"""The risk bench cases (goal ≥ 0.8×: "the engine adds at most 20% to a claim"), each against the same
requests of a merchant whose engine is off (``enabled = false``: nothing asked), same server, side by side:

- ``risk-paid-order``: the claim a paid order makes (its red packet) and the rewards it books, with the
  engine enforcing — one Redis script call with the claim and reward counters, the decision row, the new
  links and, as these orders have no browse trail, a hold row;
- ``risk-pool-grab``: a claim — a red-packet pool grab, each of another consumer with their own device
  token — with the engine enforcing (one Redis script call, the decision row and the device's link, in
  the grab's transaction).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bench.harness import Case, Paired, Request, Server
from bench.pools import RULES as POOL_RULES
from bench.pools import SHARE_FEN
from bench.seed import PAID_ORDER_RULES as RULES
from bench.seed import PAID_ORDER_TOTAL_FEN as ORDER_TOTAL_FEN
from bench.seed import _app, seed_campaign, seed_pay_merchant, transaction_success

PER_ORDER_FEN = 10_00 + 100_00 + 50_00 + ORDER_TOTAL_FEN * 200 // 10_000


def _orders(server: Server, slug: str, total: int, policy: dict[str, Any]) -> list[Request]:
    """``total`` paid orders (each of another buyer, paid from a distinct IP and device) of a merchant whose
    risk policy is ``policy``."""
    from sqlalchemy import select

    from app import create_app
    from app.audit.service import CLI
    from app.extensions import db
    from app.orders.models import Order
    from app.risk import Client, remember_order_client
    from app.risk.service import update_policy
    from app.settings import load_settings

    merchant = seed_pay_merchant(server, slug=slug, orders=total, total_fen=ORDER_TOTAL_FEN, buyers=total)
    seed_campaign(server, merchant_id=merchant.merchant_id, rules=RULES, budget_fen=2 * PER_ORDER_FEN * total)
    app = create_app(load_settings(environ=server.env))
    with app.app_context(), app.test_request_context():
        update_policy(merchant_id=merchant.merchant_id, changes=policy, actor=CLI)
        db.session.commit()
        for n, (order_id, consumer_id) in enumerate(
            db.session.execute(
                select(Order.id, Order.consumer_id).where(Order.merchant_id == merchant.merchant_id)
            )
        ):
            client = Client(
                ip=f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}", device=f"bench-device-{n}"
            )
            remember_order_client(
                merchant_id=merchant.merchant_id, consumer_id=consumer_id, order_id=order_id, client=client
            )
        db.session.commit()
        db.engine.dispose()
    # Each order paid by its own buyer's WeChat account (the seed's one payer would make every buyer one
    # linked group: a farm, not a shop's customers).
    return [
        transaction_success(replace(merchant, openid=f"o-bench-payer-{n:06d}"), attempt)
        for n, attempt in enumerate(merchant.attempts)
    ]


def _risk_paid_order(server: Server, total: int) -> Paired:
    # Signed now, like the notify cases: the run must end within WeChat's ±5 minute window.
    enforced = _orders(server, "bench-risk-on", total, {"enforce": True})
    off = _orders(server, "bench-risk-off", total, {"enabled": False})
    return Paired(case=enforced.__getitem__, baseline=off.__getitem__)


RISK_PAID_ORDER = Case(
    name="risk-paid-order",
    description="a paid order's claim (its red packet) and rewards with the risk engine enforcing (one Redis "
    "script, the decision, a hold) vs the same orders of a merchant with the engine off",
    prepare=_risk_paid_order,
    goal_ratio=0.8,
    expect_status=(204,),
    baseline_label="engine off",
    baseline_status=(204,),
)


# Every grab comes from the bench client's one address: the per-IP limits are off (0 still counts: the
# script reads and writes the same keys), everything else is the default policy, enforced.
GRAB_POLICY = {
    "enforce": True,
    "ip_claims_per_day": 0,
    "ip_min_interval_seconds": 0,
    "new_accounts_per_ip_per_day": 0,
}


def _grabs(server: Server, slug: str, total: int, policy: dict[str, Any]) -> list[Request]:
    """A merchant whose risk policy is ``policy``, its open pool of ``total`` shares and, per share, a
    signed-in consumer with their own device token: their grab requests."""
    from datetime import timedelta

    from app.audit.service import CLI
    from app.consumers.models import Consumer
    from app.consumers.sessions import issue_session
    from app.core.db import utcnow
    from app.core.money import Money
    from app.extensions import db
    from app.pools import service
    from app.pools.models import Audience, SplitKind
    from app.risk.clients import DEVICE_HEADER, issue_device_token
    from app.risk.service import update_policy

    merchant = seed_pay_merchant(server, slug=slug, orders=0)
    campaign_id = seed_campaign(
        server, merchant_id=merchant.merchant_id, rules=POOL_RULES, budget_fen=2 * SHARE_FEN * total
    )
    app = _app(server)
    with app.app_context(), app.test_request_context():
        update_policy(merchant_id=merchant.merchant_id, changes=policy, actor=CLI)
        now = utcnow()
        pool = service.create_pool(
            merchant_id=merchant.merchant_id,
            campaign_id=campaign_id,
            name="bench risk pool",
            split=SplitKind.RANDOM,
            audience=Audience.ALL,
            total=Money(SHARE_FEN * total),
            count=total,
            starts_at=now - timedelta(minutes=1),
            ends_at=now + timedelta(hours=2),
            min_spend=Money(0),
            valid_days=7,
            actor=CLI,
        )
        service.open_pool(merchant_id=merchant.merchant_id, pool_id=pool.id, actor=CLI)
        requests = []
        for _ in range(total):
            consumer = Consumer(merchant_id=merchant.merchant_id, nickname="bench grabber")
            db.session.add(consumer)
            db.session.flush()
            token, _ = issue_session(consumer)
            headers = {
                "Authorization": f"Bearer {token}",
                "X-WX-AppId": merchant.appid,
                "Content-Type": "application/json",
                DEVICE_HEADER: issue_device_token(),
            }
            requests.append(Request("POST", f"/api/mp/v1/pools/{pool.id}/grab", b"{}", headers))
        db.session.commit()
        db.engine.dispose()
    return requests


def _risk_pool_grab(server: Server, total: int) -> Paired:
    enforced = _grabs(server, "bench-risk-grab-on", total, GRAB_POLICY)
    off = _grabs(server, "bench-risk-grab-off", total, {"enabled": False})
    return Paired(case=enforced.__getitem__, baseline=off.__getitem__)


RISK_POOL_GRAB = Case(
    name="risk-pool-grab",
    description="a claim (a pool grab, each of another consumer and device) with the risk engine enforcing "
    "(one Redis script, the decision, the device's link) vs the same grabs of a merchant with the engine off",
    prepare=_risk_pool_grab,
    goal_ratio=0.8,
    expect_status=(201,),
    baseline_label="engine off",
    baseline_status=(201,),
)
