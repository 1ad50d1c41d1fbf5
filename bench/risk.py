"""The risk bench case: the claim a paid order makes (its red packet) and the rewards it books, with the
risk engine enforcing — one Redis script call with the claim and reward counters, the decision row and,
as these orders have no browse trail, a hold row — vs the same paid orders of a merchant whose engine is
off (``enabled = false``: the booking asks nothing). Same server, side by side; goal ≥ 0.8× (the engine
adds at most 20% to a claim).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bench.harness import Case, Paired, Request, Server
from bench.seed import seed_campaign, seed_pay_merchant, transaction_success

ORDER_TOTAL_FEN = 200_00
RULES = {
    "rules": [
        {
            "id": "two-way",
            "kind": "two_way",
            "priority": 10,
            "stacking": "combinable",
            "trigger_min_order_fen": 200_00,
            "packet_value_fen": 10_00,
            "packet_min_spend_fen": 50_00,
            "packet_valid_days": 30,
            "issuer_rate_bp": 1000,
            "buyer_rate_bp": 500,
            "max_order_fen": 1000_00,
        },
        {"id": "ratio", "kind": "ratio", "priority": 5, "stacking": "combinable", "rate_bp": 200},
    ]
}
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
