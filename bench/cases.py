"""The registered benchmark cases. Each later capability adds its own here."""

from __future__ import annotations

from bench.console import DASHBOARD
from bench.coupons import COUPON_USE
from bench.harness import Case, Paired, Request, RequestSource, Server
from bench.pools import POOL_CASES
from bench.risk import RISK_PAID_ORDER, RISK_POOL_GRAB
from bench.seed import (
    PAID_ORDER_RULES,
    PAID_ORDER_TOTAL_FEN,
    behaviour_event,
    oa_subscribe,
    post_each,
    seed_campaign,
    seed_consumer,
    seed_pay_merchant,
    transaction_success,
)

PACKET_WORST_CASE_FEN = 10_00 + 100_00 + 50_00


def _readiness(server: Server, _total: int) -> RequestSource:
    request = Request("GET", "/readyz")
    return lambda _i: request


def _paid_order_notifications(server: Server, slug: str, orders: int) -> list[Request]:
    # Signed now: the whole run must end within WeChat's ±5 minute timestamp window.
    merchant = seed_pay_merchant(server, slug=slug, orders=orders)
    return [transaction_success(merchant, attempt) for attempt in merchant.attempts]


def _notify_full(server: Server, total: int) -> RequestSource:
    # One pending order per request, so every request takes the whole path.
    return _paid_order_notifications(server, "bench-notify-full", total).__getitem__


def _notify_duplicate(server: Server, total: int) -> RequestSource:
    # Each notification is applied once here, then replayed once in the run: a distinct one per request,
    # as WeChat's repeats of one notification come seconds apart. (Many at once are one effect too:
    # tests/races/test_notifications.py.)
    requests = _paid_order_notifications(server, "bench-notify-duplicate", total)
    post_each(server, requests)
    return requests.__getitem__


def _paid_order(server: Server, total: int) -> Paired:
    # Signed now, like the notify cases: the run must end within WeChat's ±5 minute window.
    merchant = seed_pay_merchant(
        server, slug="bench-paid-order", orders=total, total_fen=PAID_ORDER_TOTAL_FEN
    )
    per_order = PACKET_WORST_CASE_FEN + PAID_ORDER_TOTAL_FEN * 200 // 10_000
    seed_campaign(
        server, merchant_id=merchant.merchant_id, rules=PAID_ORDER_RULES, budget_fen=2 * per_order * total
    )
    baseline = behaviour_event(seed_consumer(server, merchant))
    requests = [transaction_success(merchant, attempt) for attempt in merchant.attempts]
    return Paired(case=requests.__getitem__, baseline=lambda _i: baseline)


# A promotion day: many buyers paying at once for orders of ONE campaign. The same paid orders (each
# of another buyer) with 8 clients against 1 client: the campaign's budget is taken last, so orders
# no longer queue on the campaign from their rules to their commit.
SCALING_CLIENTS = 8


def _paid_order_scaling(server: Server, total: int) -> Paired:
    many = _paid_orders(server, "bench-scaling-many", total)
    one = _paid_orders(server, "bench-scaling-one", total)
    return Paired(case=many.__getitem__, baseline=one.__getitem__)


def _paid_order_shared_campaign(server: Server, total: int) -> Paired:
    # The ceiling: the same load over 8 merchants, each with its own campaign, so no two concurrent
    # orders share a row. One campaign at ≈ 1× of it means the campaign adds no queue of its own.
    shared = _paid_orders(server, "bench-shared", total)
    share = -(-total // SCALING_CLIENTS)
    apart = [_paid_orders(server, f"bench-apart-{n}", share) for n in range(SCALING_CLIENTS)]
    interleaved = [apart[i % SCALING_CLIENTS][i // SCALING_CLIENTS] for i in range(total)]
    return Paired(case=shared.__getitem__, baseline=interleaved.__getitem__)


# Ten active campaigns of one merchant, as a merchant runs them: the seed campaign, and nine for bigger
# baskets (a two-way packet from ¥300, ratio and ladder rebates from ¥500, fixed ones from ¥800 …) that
# a ¥200 order does not reach. Only the campaign whose rules grant is touched; the others cost a rule
# evaluation in memory.
_BIGGER_BASKETS: tuple[dict[str, object], ...] = (
    {**PAID_ORDER_RULES["rules"][0], "trigger_min_order_fen": 300_00},
    {
        "id": "ratio",
        "kind": "ratio",
        "priority": 5,
        "stacking": "combinable",
        "rate_bp": 300,
        "min_order_fen": 500_00,
    },
    {
        "id": "ladder",
        "kind": "ladder",
        "priority": 5,
        "stacking": "combinable",
        "tiers": [{"min_order_fen": 500_00, "rate_bp": 200}, {"min_order_fen": 1000_00, "rate_bp": 400}],
    },
    {
        "id": "fixed",
        "kind": "fixed",
        "priority": 5,
        "stacking": "combinable",
        "amount_fen": 20_00,
        "min_order_fen": 800_00,
    },
)


def _paid_orders(server: Server, slug: str, total: int, campaigns: int = 1) -> list[Request]:
    """``total`` paid orders (each of another buyer) of a merchant running the seed campaign and
    ``campaigns - 1`` campaigns for bigger baskets."""
    merchant = seed_pay_merchant(
        server, slug=slug, orders=total, total_fen=PAID_ORDER_TOTAL_FEN, buyers=total
    )
    per_order = PACKET_WORST_CASE_FEN + PAID_ORDER_TOTAL_FEN * 200 // 10_000
    seed_campaign(
        server, merchant_id=merchant.merchant_id, rules=PAID_ORDER_RULES, budget_fen=2 * per_order * total
    )
    for n in range(campaigns - 1):
        rule = _BIGGER_BASKETS[n % len(_BIGGER_BASKETS)]
        seed_campaign(
            server, merchant_id=merchant.merchant_id, rules={"rules": [rule]}, budget_fen=100_000_00
        )
    return [transaction_success(merchant, attempt) for attempt in merchant.attempts]


def _paid_order_ten_campaigns(server: Server, total: int) -> Paired:
    ten = _paid_orders(server, "bench-ten-campaigns", total, 10)
    one = _paid_orders(server, "bench-one-campaign", total)
    return Paired(case=ten.__getitem__, baseline=one.__getitem__)


def _oa_follow(server: Server, total: int) -> RequestSource:
    # A distinct follower per request: each push is verified, decrypted, recorded once (the dedupe row,
    # the follower) and its welcome job queued in Redis after the commit.
    merchant = seed_pay_merchant(server, slug="bench-oa", orders=0)
    return [oa_subscribe(merchant, f"o-bench-{n:08d}") for n in range(total)].__getitem__


def _wallet_read(server: Server, _total: int) -> Paired:
    merchant = seed_pay_merchant(server, slug="bench-wallet", orders=0)
    light = Request(
        "GET", "/api/mp/v1/wallet", headers=seed_consumer(server, merchant, wallet_entries=200).headers
    )
    heavy = Request(
        "GET", "/api/mp/v1/wallet", headers=seed_consumer(server, merchant, wallet_entries=2000).headers
    )
    return Paired(case=lambda _i: heavy, baseline=lambda _i: light)


CASES: tuple[Case, ...] = (
    Case(
        name="readyz",
        description="readiness probe (a database query and a Redis ping) vs /healthz",
        prepare=_readiness,
        goal_ratio=0.2,
    ),
    Case(
        name="notify-full",
        description="WeChat Pay TRANSACTION.SUCCESS, each for a distinct pending order: verify, decrypt, "
        "one statement that logs it and reads its attempt, then mark paid under the row lock, domain event, "
        "commit",
        prepare=_notify_full,
        goal_ratio=0.35,
        expect_status=(204,),
    ),
    Case(
        name="notify-duplicate",
        description="an already applied TRANSACTION.SUCCESS replayed: verify, decrypt, one statement that "
        "logs it and finds its attempt paid, answer 204",
        prepare=_notify_duplicate,
        goal_ratio=0.6,
        expect_status=(204,),
    ),
    Case(
        name="paid-order",
        description="WeChat Pay TRANSACTION.SUCCESS for a pending order of a merchant with a funded, active "
        "two-way campaign: verify, decrypt, mark paid, run the rules, reserve a red packet and book a rebate "
        "(ledger postings), commit",
        prepare=_paid_order,
        goal_ratio=0.3,
        expect_status=(204,),
        baseline_label="POST /api/mp/v1/events (one row)",
        baseline_status=(202,),
    ),
    Case(
        name="paid-order-8-clients",
        description="paid orders of one campaign (the paid-order path, each of another buyer) from 8 "
        "clients vs from 1: the campaign's budget is taken last, so orders do not queue on the campaign",
        prepare=_paid_order_scaling,
        goal_ratio=3.0,
        expect_status=(204,),
        baseline_label="the same with 1 client",
        baseline_status=(204,),
        concurrency=SCALING_CLIENTS,
        baseline_concurrency=1,
    ),
    Case(
        name="paid-order-one-campaign",
        description="paid orders of one campaign from 8 clients vs the same load over 8 merchants with a "
        "campaign each (no row shared by two concurrent orders): ≈ 1 when the campaign queues nothing",
        prepare=_paid_order_shared_campaign,
        goal_ratio=0.9,
        expect_status=(204,),
        baseline_label="8 merchants, a campaign each",
        baseline_status=(204,),
        concurrency=SCALING_CLIENTS,
        baseline_concurrency=SCALING_CLIENTS,
    ),
    Case(
        name="paid-order-10-campaigns",
        description="a paid order of a merchant running 10 active campaigns (the seed campaign and nine for "
        "bigger baskets that a ¥200 order does not reach) vs one running the seed campaign alone",
        prepare=_paid_order_ten_campaigns,
        goal_ratio=0.6,
        expect_status=(204,),
        baseline_label="the same merchant with 1 campaign",
        baseline_status=(204,),
    ),
    Case(
        name="oa-follow-event",
        description="an official-account subscribe push in safe mode: signature, msg_signature, decrypt, "
        "defused parse, recorded once, follower row, welcome job queued in Redis after commit",
        prepare=_oa_follow,
        goal_ratio=0.15,
        expect_status=(200,),
    ),
    Case(
        name="wallet-read",
        description="GET /api/mp/v1/wallet of a consumer with 2 000 ledger entries vs one with 200: "
        "balances are cached on the accounts, so the ratio should be about 1",
        prepare=_wallet_read,
        goal_ratio=0.9,
        baseline_label="the same read, 10x fewer entries",
    ),
    COUPON_USE,
    DASHBOARD,
    RISK_PAID_ORDER,
    RISK_POOL_GRAB,
    *POOL_CASES,
)
