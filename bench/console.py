"""The console's dashboard of a merchant with 100 000 ledger entries vs the same dashboard with 10 000.

Both merchants have the same last 30 days (the dashboard's default range): a funded two-way campaign,
red packets issued and redeemed, orders, grants and ledger entries. They differ only in history, older than
the range: 100 000 vs 10 000 journal entries (each two postings), with a third as many orders, red packets
and grants. The rows are cloned from real ones by ``INSERT … SELECT … generate_series`` (the services would
take minutes), histories first and recent rows last, so ids follow time as they do in production.
A dashboard that reads only its range is flat: ratio ≈ 1 (goal: the 100k one at least 1/1.5 as fast).
"""

from __future__ import annotations

import http.client
import json
import secrets
from typing import Any

from sqlalchemy import text

from bench.harness import Case, Paired, Request, Server
from bench.seed import _app, seed_campaign, seed_pay_merchant

RECENT_UNITS = 300  # orders (and packets, grants, ~3 entries) in the last 30 days, for both merchants
PASSWORD = secrets.token_urlsafe(16)  # the bench owner's, for this run only
TWO_WAY = {
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
        }
    ]
}


def _clone(conn: Any, table: Any, template_id: int, n: int, overrides: dict[str, str], **params: Any) -> None:
    """``n`` copies of row ``template_id`` of ``table`` (ids in series order), some columns overridden by SQL
    in terms of ``g`` (1…n) and ``t`` (the template)."""
    columns = [c.name for c in table.columns if c.name != "id"]
    values = ", ".join(overrides.get(c, f"t.{c}") for c in columns)
    conn.execute(
        text(
            f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {values} "  # noqa: S608 - our table names
            f"FROM {table.name} t, generate_series(1, :n) g WHERE t.id = :tid ORDER BY g"
        ),
        {"n": n, "tid": template_id, **params},
    )


def _templates(server: Server, slug: str) -> dict[str, Any]:
    """A merchant with an owner, a funded active campaign, and one real row of each kind to clone."""
    from sqlalchemy import select

    from app.audit.service import CLI
    from app.auth.principals import Role
    from app.campaigns.service import issue_staff_red_packet
    from app.core.db import utcnow
    from app.core.money import Money
    from app.extensions import db
    from app.ledger.models import JournalEntry
    from app.orders.models import Order, OrderStatus
    from app.rebates.models import RebateGrant
    from app.staff.service import create_staff, grant_role

    merchant = seed_pay_merchant(server, slug=slug, orders=0)
    campaign_id = seed_campaign(server, merchant_id=merchant.merchant_id, rules=TWO_WAY, budget_fen=10**9)
    app = _app(server)
    with app.app_context():
        owner = create_staff(
            email=f"owner@{slug}.test", display_name="Bench owner", password=PASSWORD, actor=CLI
        )
        grant_role(account=owner, merchant_id=merchant.merchant_id, role=Role.OWNER, actor=CLI)
        now = utcnow()
        order = Order(
            merchant_id=merchant.merchant_id,
            consumer_id=merchant.consumer_id,
            out_order_no=f"{slug}-template",
            request_digest="0" * 64,
            total=Money(5000),
            items=[],
            description="tea",
            open_after_sale_ids=[],
            status=OrderStatus.PAID,
            paid_amount=Money(4000),
            discount=Money(1000),
            paid_at=now,
        )
        db.session.add(order)
        packet = issue_staff_red_packet(
            merchant_id=merchant.merchant_id,
            campaign_id=campaign_id,
            consumer_id=merchant.consumer_id,
            rule_id="two-way",
            key=f"{slug}-template",
            actor=CLI,
        )
        db.session.flush()
        grant = RebateGrant(
            merchant_id=merchant.merchant_id,
            campaign_id=campaign_id,
            rule_version_id=packet.rule_version_id,
            rule_id="two-way",
            order_id=order.id,
            beneficiary="buyer",
            consumer_id=merchant.consumer_id,
            amount=Money(250),
            basis="bench",
        )
        db.session.add(grant)
        db.session.flush()
        entry_id = db.session.scalar(
            select(JournalEntry.id)
            .where(JournalEntry.merchant_id == merchant.merchant_id)
            .order_by(JournalEntry.id)
        )
        ids = {"merchant": merchant.merchant_id, "order": order.id, "packet": packet.id, "grant": grant.id}
        ids |= {"entry": entry_id, "slug": slug}
        db.session.commit()
        db.engine.dispose()
    return ids


def _rows(server: Server, ids: dict[str, Any], *, entries: int, days_ago: tuple[int, int], tag: str) -> None:
    """``entries`` journal entries (two postings each) and a third as many orders, red packets and grants,
    spread over ``days_ago`` (from, to) days before now, oldest first."""
    from app.extensions import db
    from app.ledger.models import JournalEntry
    from app.orders.models import Order
    from app.rebates.models import RebateGrant
    from app.red_packets.models import RedPacket

    units = max(entries // 3, 1)
    start, end = days_ago
    # g-th row of n: evenly from `start` days ago to `end` days ago.
    at = "now() - make_interval(secs => (:start - (:start - :end) * g::float / :n) * 86400)"
    app = _app(server)
    with app.app_context(), db.engine.begin() as conn:  # one transaction: all of it or nothing
        key = f"bench-{ids['slug']}-{tag}"
        common = {"start": start, "end": end}
        _clone(
            conn,
            Order.__table__,
            ids["order"],
            units,
            {
                "out_order_no": f"'{key}-' || g",
                "created_at": at,
                "paid_at": at,
            },
            **common,
        )
        _clone(
            conn,
            RedPacket.__table__,
            ids["packet"],
            units,
            {
                "status": "'redeemed'",
                "order_id": str(ids["order"]),
                "created_at": at,
                "redeemed_at": f"{at} + interval '1 hour'",
                "valid_from": at,
            },
            **common,
        )
        _clone(
            conn,
            RebateGrant.__table__,
            ids["grant"],
            units,
            {
                "rule_id": f"'{tag}-' || g",
                "created_at": at,
            },
            **common,
        )
        _clone(
            conn,
            JournalEntry.__table__,
            ids["entry"],
            entries,
            {
                "idempotency_key": f"'{key}-' || g",
                "created_at": at,
                "reason": "'reserve'",
            },
            **common,
        )
        accounts = dict(
            conn.execute(
                text(
                    "SELECT kind, id FROM ledger_accounts WHERE merchant_id = :m AND kind IN "
                    "('campaign_budget', 'campaign_reserved')"
                ),
                {"m": ids["merchant"]},
            )
            .tuples()
            .all()
        )
        for kind, amount in (("campaign_budget", -100), ("campaign_reserved", 100)):
            conn.execute(
                text(
                    "INSERT INTO postings (entry_id, account_id, amount, created_at) SELECT id, :a, :amt, "
                    "created_at FROM journal_entries WHERE idempotency_key LIKE :k ORDER BY id"
                ),
                {"a": accounts[kind], "amt": amount, "k": f"{key}-%"},
            )
            conn.execute(
                text("UPDATE ledger_accounts SET balance = balance + :d WHERE id = :a"),
                {"d": amount * entries, "a": accounts[kind]},
            )


def _login(server: Server, slug: str) -> dict[str, str]:
    """The owner's console cookie, from a real login."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    body = json.dumps({"email": f"owner@{slug}.test", "password": PASSWORD})
    conn.request("POST", "/api/console/v1/session", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"bench login: {response.status}")
    cookie = (response.getheader("Set-Cookie") or "").split(";", 1)[0]
    return {"Cookie": cookie, "Accept": "text/html"}


def _dashboards(server: Server, _total: int) -> Paired:
    run = secrets.token_hex(3)
    small, large = _templates(server, f"bench-dash-10k-{run}"), _templates(server, f"bench-dash-100k-{run}")
    # Histories first (older than the range), then the same recent month for both: ids follow time.
    _rows(server, small, entries=10_000, days_ago=(400, 40), tag="history")
    _rows(server, large, entries=100_000, days_ago=(400, 40), tag="history")
    for ids in (small, large):
        _rows(server, ids, entries=RECENT_UNITS * 3, days_ago=(29, 0), tag="recent")
    heavy = Request("GET", f"/console/m/{large['slug']}/", headers=_login(server, large["slug"]))
    light = Request("GET", f"/console/m/{small['slug']}/", headers=_login(server, small["slug"]))
    return Paired(case=lambda _i: heavy, baseline=lambda _i: light)


DASHBOARD = Case(
    name="console-dashboard",
    description="the console's dashboard page (last 30 days: ledger balances and flows, funnel, orders, top "
    "promoters, charts) of a merchant with 100 000 ledger entries vs one with 10 000 and the same last month",
    prepare=_dashboards,
    goal_ratio=1 / 1.5,
    baseline_label="the same dashboard, 10x fewer entries",
)
