"""The registered benchmark cases. Each later capability adds its own here."""

from __future__ import annotations

from bench.harness import Case, Request, RequestSource, Server
from bench.seed import post_each, seed_pay_merchant, transaction_success


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
    # Each notification is applied once here, then replayed once in the run. A distinct one per request
    # rather than one replayed by every connection: concurrent replays of the same notification
    # currently deadlock on the order row (gateway_events' FK share-locks it before SELECT … FOR UPDATE).
    requests = _paid_order_notifications(server, "bench-notify-duplicate", total)
    post_each(server, requests)
    return requests.__getitem__


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
        "mark paid under the row lock, event + gateway log rows, commit",
        prepare=_notify_full,
        goal_ratio=0.5,
        expect_status=(204,),
    ),
    Case(
        name="notify-duplicate",
        description="an already applied TRANSACTION.SUCCESS replayed: verify, decrypt, log, answer 204",
        prepare=_notify_duplicate,
        goal_ratio=0.8,
        expect_status=(204,),
    ),
)
