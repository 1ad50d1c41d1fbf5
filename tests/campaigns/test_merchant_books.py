"""The merchant's books in the console API: every figure equals the ledger after a real money loop
through the sandbox; deposits into the budget by finance or the owner only, once per key, audited once."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import func, select

from app.audit.models import AuditEntry
from app.auth.principals import Role
from app.consumers.models import Consumer
from app.extensions import db
from app.ledger.accounts import campaign_accounts, consumer_accounts, merchant_accounts
from app.ledger.models import JournalEntry
from app.payments.models import Refund
from jobs.payments import submit_refund
from tests.campaigns.conftest import Consoles, MakeCampaign, row_counts
from tests.console_client import Console
from tests.factories import make_merchant, make_staff
from tests.payments.conftest import Shop

MONEY = "/api/console/v1/money"
DEPOSITS = "/api/console/v1/budget/deposits"


def _audits(action: str) -> int:
    return (
        db.session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == action))
        or 0
    )


def _money_loop(shop: Shop, consoles: Consoles, make_campaign: MakeCampaign) -> tuple[int, dict, dict]:
    """Seed campaign; ¥200 paid → red packet; spent on ¥50 (10% issuer, 5% buyer); ¥20 refunded."""
    campaign = make_campaign()
    deposited = consoles.owner.post(DEPOSITS, json={"amount_fen": 50000, "idempotency_key": "bank-ref-1"})
    assert deposited.status_code == 201, deposited.json
    first = shop.register("MB-1", 20000)
    shop.pay(first["id"])
    packet = shop.client.get("/api/mp/v1/red-packets", headers=shop.consumer_headers).json[0]
    second = shop.register("MB-2", 5000)
    assert shop.pay_params(second["id"], red_packet_id=packet["id"]).status_code == 200
    shop.sandbox.post(f"/transactions/{shop.out_trade_no(second['id'])}/pay", {"mchid": shop.merchant.mchid})
    assert shop.refund("MB-2", "MB-R1", 2000).status_code == 202
    row = db.session.scalars(select(Refund).where(Refund.out_refund_no == "MB-R1")).one()
    submit_refund(row.id)
    shop.sandbox.post(
        f"/refunds/{row.wechat_refund_no}/resolve", {"mchid": shop.merchant.mchid, "status": "SUCCESS"}
    )
    return campaign, first, second


def test_every_figure_is_the_ledgers_after_a_money_loop(
    shop: Shop, consoles: Consoles, make_campaign: MakeCampaign
) -> None:
    campaign, first, second = _money_loop(shop, consoles, make_campaign)
    mid = shop.merchant.id
    db.session.expire_all()
    money = consoles.viewer.get(MONEY)
    assert money.status_code == 200, money.json
    books = money.json
    assert books["budget_fen"] == merchant_accounts(mid).budget.balance.fen == 50000
    rebate = merchant_accounts(mid).rebate.balance.fen
    # ¥10 face value spent + ¥5 issuer leg, half of each clawed back by the half refund.
    assert books["rebate_fen"] == rebate == 750
    assert books["rebate_by_reason"] == {"red_packet_redeem": 1000, "rebate_pending": 500, "clawback": -750}
    (row,) = books["campaigns"]
    accounts = campaign_accounts(mid, campaign)
    assert row["id"] == campaign
    assert (row["budget_fen"], row["reserved_fen"]) == (
        accounts.budget.balance.fen,
        accounts.reserved.balance.fen,
    )
    assert row["reserved_fen"] == 0  # the one packet was spent
    assert row["funded_fen"] == 100000
    stats = consoles.viewer.get(f"/api/console/v1/campaigns/{campaign}/stats").json
    assert row["spent_fen"] == stats["cost_fen"] == 875  # the ledger agrees with the grants, net of refunds
    assert row["funded_fen"] - row["spent_fen"] == row["budget_fen"] + row["reserved_fen"]
    assert row["skip_stats"] == stats["skip_stats"]

    page = consoles.viewer.get("/api/console/v1/orders").json
    assert [o["out_order_no"] for o in page["orders"]] == ["MB-2", "MB-1"] and page["next_before"] is None
    listed = page["orders"][0]
    assert (listed["status"], listed["total_fen"], listed["paid_fen"]) == ("paid", 5000, 4000)
    assert (listed["discount_fen"], listed["refunded_fen"]) == (1000, 2000)

    detail = consoles.viewer.get(f"/api/console/v1/orders/{second['id']}").json
    assert detail["order"]["id"] == second["id"] and detail["order"]["items"]
    (paid_attempt,) = [a for a in detail["payment_attempts"] if a["status"] == "paid"]
    assert (paid_attempt["amount_fen"], paid_attempt["discount_fen"]) == (4000, 1000)
    assert paid_attempt["red_packet_id"] == detail["red_packets"][0]["id"]
    assert detail["red_packets"][0]["face_value_fen"] == 1000
    assert detail["red_packets"][0]["status"] == "redeemed"
    grants = {g["beneficiary"]: (g["amount_fen"], g["reversed_fen"]) for g in detail["grants"]}
    assert grants == {"red_packet_discount": (1000, 500), "issuer_merchant": (500, 250), "buyer": (250, 125)}
    assert [(r["amount_fen"], r["status"]) for r in detail["refunds"]] == [(2000, "succeeded")]
    assert consoles.viewer.get(f"/api/console/v1/orders/{first['id']}").json["grants"] == []

    alice = db.session.get(Consumer, shop.consumer_id)
    assert alice is not None
    alice.nickname = "Alice 100%"  # as a profile update would set it
    db.session.flush()
    found = consoles.viewer.get("/api/console/v1/consumers", query_string={"q": "ali"}).json
    assert [c["id"] for c in found["consumers"]] == [shop.consumer_id]
    by_openid = consoles.viewer.get("/api/console/v1/consumers", query_string={"q": shop.openid}).json
    assert [c["id"] for c in by_openid["consumers"]] == [shop.consumer_id]
    percent = consoles.viewer.get("/api/console/v1/consumers", query_string={"q": "0%"}).json
    assert [c["id"] for c in percent["consumers"]] == [shop.consumer_id]  # a literal %, not a wildcard
    assert consoles.viewer.get("/api/console/v1/consumers", query_string={"q": "_"}).json["consumers"] == []
    person = consoles.viewer.get(f"/api/console/v1/consumers/{shop.consumer_id}").json
    wallet = consumer_accounts(mid, shop.consumer_id)
    assert person["wallet"] == {
        "pending_fen": wallet.pending.balance.fen,
        "available_fen": wallet.available.balance.fen,
        "withdrawing_fen": wallet.withdrawing.balance.fen,
        "debt_fen": 0,
    }
    assert person["wallet"]["pending_fen"] == 125
    assert person["withdrawals"] == []
    assert person["consumer"]["nickname"] == "Alice 100%"


def test_only_finance_and_the_owner_deposit(shop: Shop, app: Flask, consoles: Consoles) -> None:
    body = {"amount_fen": 1000, "idempotency_key": "role-1"}
    assert consoles.viewer.get(MONEY).status_code == 200
    for console in (consoles.viewer, consoles.operator):
        refused = console.post(DEPOSITS, json=body)
        assert refused.status_code == 403, refused.json
        assert refused.json["error"]["code"] == "forbidden"
    assert merchant_accounts(shop.merchant.id).budget.balance.fen == 0
    finance = Console(app.test_client(), shop.merchant.slug).login(
        make_staff(merchant=shop.merchant, role=Role.FINANCE).email
    )
    assert finance.post(DEPOSITS, json=body).status_code == 201
    assert consoles.owner.post(DEPOSITS, json=body | {"idempotency_key": "role-2"}).status_code == 201
    assert consoles.viewer.get(MONEY).json["budget_fen"] == 2000
    # Another merchant's staff cannot touch this merchant's books.
    stranger = make_staff(merchant=make_merchant(slug="other-shop"), role=Role.OWNER)
    other = Console(app.test_client(), shop.merchant.slug).login(stranger.email)
    assert other.get(MONEY).status_code == 403
    assert other.post(DEPOSITS, json=body | {"idempotency_key": "role-3"}).status_code == 403


def test_a_deposit_is_one_entry_and_one_audit_entry_however_often_it_is_sent(
    shop: Shop, consoles: Consoles
) -> None:
    body = {"amount_fen": 12345, "idempotency_key": "bank-ref-42"}
    first = consoles.owner.post(DEPOSITS, json=body)
    assert first.status_code == 201, first.json
    assert first.json["replayed"] is False and first.json["budget_fen"] == 12345
    again = consoles.owner.post(DEPOSITS, json=body)
    assert again.status_code == 200, again.json
    assert again.json == first.json | {"replayed": True}
    changed = consoles.owner.post(DEPOSITS, json=body | {"amount_fen": 999})
    assert changed.status_code == 409 and changed.json["error"]["details"]["amount_fen"] == 12345
    assert merchant_accounts(shop.merchant.id).budget.balance.fen == 12345
    entries = db.session.scalar(
        select(func.count())
        .select_from(JournalEntry)
        .where(JournalEntry.idempotency_key.like("%bank-ref-42"))
    )
    assert entries == 1
    audit = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "budget.deposit")).all()
    assert len(audit) == 1
    assert (audit[0].actor_type, audit[0].merchant_id) == ("staff", shop.merchant.id)
    assert audit[0].after is not None and audit[0].after["amount_fen"] == 12345


def test_cli_deposits_and_campaign_fund_replays_are_audited_once(
    shop: Shop, app: Flask, consoles: Consoles, make_campaign: MakeCampaign
) -> None:
    args = ["budgets", "deposit", "--merchant", shop.merchant.slug, "--amount-fen", "3000", "--key", "wire-7"]
    assert app.test_cli_runner().invoke(args=args).exit_code == 0
    replay = app.test_cli_runner().invoke(args=args)
    assert "recorded before" in replay.output
    (entry,) = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "budget.deposit")).all()
    assert (entry.actor_type, entry.merchant_id, entry.target_id) == (
        "cli",
        shop.merchant.id,
        str(shop.merchant.id),
    )

    campaign = make_campaign(fund_fen=0, activate=False)
    path = f"/api/console/v1/campaigns/{campaign}/fund"
    body = {"amount_fen": 3000, "source": "merchant", "idempotency_key": "fund-once-1"}
    assert consoles.owner.post(path, json=body).status_code == 200
    replayed = consoles.owner.post(path, json=body)
    assert replayed.status_code == 200 and replayed.json["budget_remaining_fen"] == 3000
    assert _audits("campaign.fund") == 1


def test_pages_are_bounded_and_keyed_on_id(shop: Shop, consoles: Consoles) -> None:
    ids = [shop.register(f"PG-{n}", 1000 + n)["id"] for n in range(5)]
    seen: list[int] = []
    before: int | None = None
    sizes = []
    while True:
        query: dict[str, int] = {"limit": 2} | ({"before": before} if before else {})
        page = consoles.viewer.get("/api/console/v1/orders", query_string=query).json
        seen += [o["id"] for o in page["orders"]]
        sizes.append(len(page["orders"]))
        before = page["next_before"]
        if before is None:
            break
    assert seen == sorted(ids, reverse=True) and sizes == [2, 2, 1]
    pending = consoles.viewer.get("/api/console/v1/orders", query_string={"status": "paid"}).json
    assert pending["orders"] == []
    mine = consoles.viewer.get("/api/console/v1/orders", query_string={"consumer_id": shop.consumer_id}).json
    assert len(mine["orders"]) == 5
    for bad in (
        {"limit": 0},
        {"limit": 101},
        {"before": "9223372036854775808"},
        {"before": "²"},
        {"status": "x"},
    ):
        answer = consoles.viewer.get("/api/console/v1/orders", query_string=bad)
        assert answer.status_code == 422, (bad, answer.json)
    for bad in ({"limit": 0}, {"q": "x" * 65}, {"before": "-1"}):
        assert consoles.viewer.get("/api/console/v1/consumers", query_string=bad).status_code == 422
    # Another merchant's order and consumer are not found here.
    assert consoles.viewer.get("/api/console/v1/orders/9223372036854775807").status_code == 404
    assert consoles.viewer.get("/api/console/v1/consumers/9223372036854775807").status_code == 404


def test_a_fresh_merchant_reads_zeros_and_writes_nothing(shop: Shop, consoles: Consoles) -> None:
    before = row_counts(db.session)
    books = consoles.viewer.get(MONEY).json
    assert books == {"budget_fen": 0, "rebate_fen": 0, "rebate_by_reason": {}, "campaigns": []}
    person = consoles.viewer.get(f"/api/console/v1/consumers/{shop.consumer_id}").json
    assert person["wallet"] == {"pending_fen": 0, "available_fen": 0, "withdrawing_fen": 0, "debt_fen": 0}
    assert row_counts(db.session) == before
