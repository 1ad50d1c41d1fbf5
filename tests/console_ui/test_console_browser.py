"""The console in Chromium, end to end (issue 14's "done when"): the demo owner creates, funds, previews and
starts the seed campaign; the seed scenario runs through the sandbox; the dashboard, funnel and wallet show
what the ledger holds; finance approves a withdrawal and sees its payout paid; a viewer changes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.auth.principals import Role
from app.core.db import utcnow
from app.extensions import db
from app.ledger.models import AccountKind, LedgerAccount
from app.web.blueprint import BEIJING
from app.web.pages_campaigns import RULE_KINDS
from tests.console_ui.conftest import Live, Watched

pytestmark = pytest.mark.slow  # a browser process

XSS = "<script>alert(1)</script>"


def ledger(live: Live, kind: AccountKind, owner_id: int | None = None) -> int:
    """The sum of the merchant's accounts of ``kind`` (of one owner when given), from the ledger."""
    from app.merchants.service import get_merchant

    with live.app.app_context():
        merchant = get_merchant(live.slug)
        query = select(func.coalesce(func.sum(LedgerAccount.balance), 0)).where(
            LedgerAccount.merchant_id == merchant.id, LedgerAccount.kind == kind
        )
        if owner_id is not None:
            query = query.where(LedgerAccount.owner_id == owner_id)
        value: Any = db.session.scalar(query)
        db.session.remove()
        return value.fen if hasattr(value, "fen") else int(value)


class Buyer:
    """The mini-program and the shop, as HTTP callers of the live app (in this thread)."""

    def __init__(self, live: Live) -> None:
        from app.audit.service import CLI
        from app.merchants.service import get_merchant
        from app.shop_keys.service import create_shop_key

        self.live = live
        self.client: FlaskClient = live.app.test_client()
        with live.app.app_context():
            merchant = get_merchant(live.slug)
            self.appid, self.mchid = merchant.mp_appid or "", merchant.mchid or ""
            self.key = create_shop_key(merchant_id=merchant.id, name="ui test", actor=CLI).key
            db.session.commit()
            db.session.remove()
        live.sandbox.user(id="ui-buyer", nickname="UI buyer")
        code = live.sandbox.login_code("ui-buyer", self.appid)
        login = self.client.post("/api/mp/v1/login", json={"appid": self.appid, "code": code})
        assert login.status_code == 200, login.json
        self.token, self.consumer_id = login.json["token"], login.json["user"]["id"]

    @property
    def mp(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "X-WX-AppId": self.appid}

    def order(self, out_order_no: str, total_fen: int, red_packet_id: int | None = None) -> int:
        shop = {"Authorization": f"Bearer {self.key}"}
        body = {
            "out_order_no": out_order_no,
            "consumer": {"id": self.consumer_id},
            "total_fen": total_fen,
            "items": [
                {
                    "sku": "TEA",
                    "name": "Oolong",
                    "category": "tea",
                    "quantity": 1,
                    "unit_price_fen": total_fen,
                }
            ],
        }
        registered = self.client.post("/api/shop/v1/orders", json=body, headers=shop)
        assert registered.status_code in (200, 201), registered.json
        order_id = int(registered.json["id"])
        pay_body = {"red_packet_id": red_packet_id} if red_packet_id else {}
        paid = self.client.post(f"/api/mp/v1/orders/{order_id}/pay", json=pay_body, headers=self.mp)
        assert paid.status_code == 200, paid.json
        sandbox = paid.json["sandbox"]
        self.live.sandbox.post(sandbox["url"].split("/_sandbox", 1)[1], sandbox["body"])
        received = self.client.post(
            f"/api/shop/v1/orders/{out_order_no}/events",
            json={"type": "received", "occurred_at": utcnow().isoformat()},
            headers=shop,
        )
        assert received.status_code == 200, received.json
        return order_id

    def packets(self) -> list[dict[str, Any]]:
        return self.client.get("/api/mp/v1/red-packets", headers=self.mp).json  # type: ignore[no-any-return]

    def wallet(self) -> dict[str, int]:
        return self.client.get("/api/mp/v1/wallet", headers=self.mp).json  # type: ignore[no-any-return]


def beijing_input(delta: timedelta) -> str:
    return (utcnow() + delta).astimezone(BEIJING).strftime("%Y-%m-%dT%H:%M")


def submit(page: Watched, selector: str) -> None:
    with page.page.expect_navigation():
        page.page.click(selector)
    page.page.wait_for_load_state("load")


def test_the_console_end_to_end(live: Live, open_page: Any) -> None:
    owner: Watched = open_page("zh-CN")
    owner.open("/console/m/demo-tea/")
    assert "/console/login" in owner.page.url  # a stranger is sent to log in
    owner.shot("login")
    owner.login(Role.OWNER)
    assert owner.page.url.endswith("/console/m/demo-tea/")  # the only merchant: straight to its dashboard
    assert owner.page.get_attribute("html", "lang") == "zh-CN"
    assert "仪表盘" in owner.text("h1")

    # Money in: a deposit, then a campaign with the seed rules from the builder.
    owner.open("/console/m/demo-tea/campaigns")
    owner.page.fill("[data-test=deposit-amount]", "1000.00")
    submit(owner, "[data-test=deposit]")
    assert owner.figure("merchant_budget_fen") == 100000 == ledger(live, AccountKind.MERCHANT_BUDGET)
    owner.open("/console/m/demo-tea/campaigns/new")
    assert owner.page.input_value("input[name='rules-0-trigger_min_order_fen']") == "200.00"  # the seed rule
    owner.page.fill("[data-test=campaign-name]", "双向返利 seed")
    owner.page.fill("[data-test=starts-at]", beijing_input(-timedelta(hours=1)))
    owner.page.fill("[data-test=ends-at]", beijing_input(timedelta(days=30)))
    owner.shot("campaign-builder")
    submit(owner, "[data-test=save-campaign]")
    assert owner.text("[data-test=campaign-status]") == "草稿"
    campaign_url = owner.page.url.removeprefix(live.url)

    owner.page.fill("[data-test=fund-amount]", "1000.00")
    submit(owner, "[data-test=fund]")
    assert owner.figure("budget_remaining_fen") == 100000 == ledger(live, AccountKind.CAMPAIGN_BUDGET)

    # Preview: a ¥50 order paid with the seed packet: ¥10 discount, 10 % to the merchant, 5 % to the buyer.
    owner.page.fill("[data-test=preview-total]", "50.00")
    owner.page.check("[data-test=preview-packet]")
    submit(owner, "[data-test=preview]")
    grants = {
        row.get_attribute("data-grant"): int(row.query_selector("[data-fen]").get_attribute("data-fen"))
        for row in owner.page.query_selector_all("[data-test=preview-result] tr[data-grant]")
    }
    assert grants == {"merchant": 1000, "issuer_merchant": 500, "buyer": 250}
    assert owner.figure("preview_total_cost_fen") == 1750
    submit(owner, "form[action$='/status'] button")  # 开始 (start)
    assert owner.text("[data-test=campaign-status]") == "进行中"

    # The seed scenario through the sandbox: ¥200 earns the packet, ¥50 spends it, both received, settled.
    buyer = Buyer(live)
    buyer.order("ui-1", 20000)
    (packet,) = buyer.packets()
    buyer.order("ui-2", 5000, red_packet_id=packet["id"])
    assert buyer.wallet()["pending_fen"] == 250
    from app.rebates.service import settle_due

    with live.app.app_context():
        assert settle_due(now=utcnow() + timedelta(days=8)) == 1
        db.session.commit()
        db.session.remove()

    # The replay of the last day, with its P&L chart.
    owner.open(campaign_url)
    owner.page.fill("input[name=days]", "1")
    submit(owner, "[data-test=replay]")
    owner.page.wait_for_selector("[data-chart=replay][data-rendered]")
    owner.shot("campaign")

    # The dashboard: every figure is the ledger's.
    owner.open("/console/m/demo-tea/")
    owner.page.wait_for_selector("[data-chart=daily][data-rendered]")
    owner.page.wait_for_selector("[data-chart=funnel][data-rendered]")
    owner.shot("dashboard")
    funded = 100000
    left = ledger(live, AccountKind.CAMPAIGN_BUDGET) + ledger(live, AccountKind.CAMPAIGN_RESERVED)
    assert owner.figure("rebate_cost_fen") == funded - left == 1750
    assert owner.figure("funnel_cost_fen") == 1750
    assert owner.figure("gmv_driven_fen") == owner.figure("funnel_gmv_fen") == 5000
    assert owner.text("[data-figure=funnel_issued]") == "1"
    assert owner.text("[data-figure=funnel_redeemed]") == "1"
    assert owner.text("[data-figure=roi]") == "185.71%"  # (5000 − 1750) / 1750
    assert owner.figure("merchant_rebate_fen") == ledger(live, AccountKind.MERCHANT_REBATE) == 1500
    assert owner.figure("campaign_budget_fen") == ledger(live, AccountKind.CAMPAIGN_BUDGET) == 98250
    for kind in ("pending", "available", "withdrawing"):
        assert owner.figure(f"consumer_{kind}_fen") == ledger(live, AccountKind(f"consumer_{kind}"))
    assert owner.figure("consumer_available_fen") == 250

    # The buyer's wallet on the consumer's page is the ledger's.
    owner.open(f"/console/m/demo-tea/consumers/{buyer.consumer_id}")
    for kind in ("pending", "available", "withdrawing"):
        assert owner.figure(f"wallet_{kind}_fen") == ledger(
            live, AccountKind(f"consumer_{kind}"), buyer.consumer_id
        )
    assert owner.figure("wallet_available_fen") == 250
    owner.shot("consumer")

    # A withdrawal above the auto-approval threshold waits for finance.
    from app.audit.service import CLI
    from app.console.service import update_merchant_policy
    from app.core.money import Money
    from app.merchants.service import get_merchant

    with live.app.app_context():
        update_merchant_policy(
            merchant_id=get_merchant(live.slug).id,
            changes={"payouts": {"withdrawal_auto_approve_max_fen": Money(0)}},
            actor=CLI,
        )
        db.session.commit()
        db.session.remove()
    asked = buyer.client.post(
        "/api/mp/v1/withdrawals",
        json={"amount_fen": 250, "idempotency_key": "ui-withdraw-1"},
        headers=buyer.mp,
    )
    assert asked.status_code == 201 and asked.json["status"] == "pending_review", asked.json
    withdrawal_id = asked.json["id"]

    finance: Watched = open_page("zh-CN")
    finance.login(Role.FINANCE)
    finance.open("/console/m/demo-tea/withdrawals")
    row = f"tr[data-withdrawal='{withdrawal_id}']"
    finance.shot("withdrawals")
    submit(finance, f"{row} form[action$='/approve'] button")
    assert finance.page.is_visible("[data-flash=ok]")
    _pay_out(live, buyer, withdrawal_id)
    finance.open("/console/m/demo-tea/payouts")
    assert finance.page.get_attribute("[data-payout] [data-test=payout-status]", "class") == "badge succeeded"
    assert finance.text("[data-payout] [data-test=payout-status]") == "已支付"
    finance.shot("payouts")
    assert buyer.wallet() == {"pending_fen": 0, "available_fen": 0, "withdrawing_fen": 0, "debt_fen": 0}

    # English too.
    english: Watched = open_page("en")
    english.login(Role.OWNER)
    english.open("/console/lang/en?next=/console/m/demo-tea/")
    assert english.text("h1") == "Dashboard"


def _pay_out(live: Live, buyer: Buyer, withdrawal_id: int) -> None:
    """The worker's passes and the buyer's confirmation in WeChat (the sandbox), as `make run` would."""
    from app.payouts.models import Payout
    from app.withdrawals.models import Withdrawal
    from jobs.payouts import process_payout

    with live.app.app_context():
        withdrawal = db.session.get(Withdrawal, withdrawal_id)
        assert withdrawal is not None and withdrawal.payout_id is not None
        payout_id = withdrawal.payout_id
        assert process_payout(payout_id) == "accepted"
        bill = db.session.get(Payout, payout_id).bill_no  # type: ignore[union-attr]
        db.session.remove()
    live.sandbox.post(f"/transfer-bills/{bill}/confirm", {})
    with live.app.app_context():
        payout = db.session.get(Payout, payout_id)
        assert payout is not None
        payout.next_attempt_at = utcnow()
        db.session.commit()
        assert process_payout(payout_id) == "succeeded"
        db.session.remove()


def test_a_viewer_sees_and_is_refused_every_change(live: Live, open_page: Any) -> None:
    viewer: Watched = open_page("zh-CN")
    viewer.login(Role.VIEWER)
    viewer.open("/console/m/demo-tea/campaigns")
    assert not viewer.page.is_visible("[data-test=deposit-form]")
    assert not viewer.page.is_visible("[data-test=new-campaign]")
    links = viewer.page.query_selector_all("a[data-campaign-name]")
    if links:
        viewer.open(str(links[0].get_attribute("href")))
        assert viewer.page.is_visible("[data-test=read-only]")
        assert not viewer.page.is_visible("[data-test=fund-form]")
    token = viewer.page.get_attribute("input[name=csrf_token]", "value")
    # Forged forms, with the viewer's own valid CSRF token: every change is refused.
    for path, form in [
        ("/console/m/demo-tea/budget/deposits", {"amount": "1.00", "idempotency_key": "viewer-1"}),
        ("/console/m/demo-tea/campaigns/1/fund", {"amount": "1.00", "idempotency_key": "viewer-fund-1"}),
        ("/console/m/demo-tea/campaigns/1/status", {"to": "ended"}),
        ("/console/m/demo-tea/withdrawals/1/approve", {}),
        ("/console/m/demo-tea/payouts/1/retry", {}),
        ("/console/m/demo-tea/shop-keys", {"name": "mine"}),
    ]:
        response = viewer.page.request.post(live.url + path, form={**form, "csrf_token": token or ""})
        assert response.status == 403, (path, response.status)
    viewer.open("/console/m/demo-tea/withdrawals")  # finance's page
    assert viewer.page.is_visible("[data-error='403']")
    viewer.problems.clear()  # the 403 page is the expected answer, not a browser problem
    viewer.open("/console/m/demo-tea/")
    viewer.shot("dashboard-viewer")


def test_a_campaign_named_like_a_script_is_shown_as_text(live: Live, open_page: Any) -> None:
    owner: Watched = open_page("en")
    owner.login(Role.OWNER)
    owner.open("/console/m/demo-tea/campaigns/new")
    owner.page.fill("[data-test=campaign-name]", XSS)
    owner.page.fill("[data-test=starts-at]", beijing_input(timedelta(hours=1)))
    owner.page.fill("[data-test=ends-at]", beijing_input(timedelta(days=3)))
    # The builder's buttons add a block of fields for every rule kind and remove them again.
    rules = "#rules fieldset.rule"
    assert owner.page.locator(rules).count() == 1  # the seed rule
    for kind in RULE_KINDS:
        owner.page.select_option("#add-rule-kind", kind)
        owner.page.click("#add-rule")
        assert owner.page.locator(f"{rules}[data-rule-kind='{kind}']").count() >= 1
    assert owner.page.locator(rules).count() == 1 + len(RULE_KINDS)
    owner.shot("campaign-builder-every-kind")
    while owner.page.locator(rules).count() > 1:
        owner.page.locator(f"{rules} [data-remove-rule]").last.click()
    submit(owner, "[data-test=save-campaign]")
    assert owner.text("[data-test=campaign-title]").startswith(XSS)
    owner.open("/console/m/demo-tea/campaigns")
    assert XSS in owner.text("table")
    owner.shot("campaigns")
    # owner.problems would hold the alert if the name had run as a script
