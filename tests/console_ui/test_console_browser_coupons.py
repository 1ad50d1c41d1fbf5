"""The coupons, payouts and messages pages in Chromium, against the in-process sandbox (a database of this
module's own): the owner creates and starts a voucher stock, issues it to a follower, the follower spends it,
and the stock's metrics and the dashboard's coupon cost are the ledger's; merchant coupons refused by WeChat
show its reason and no form; finance retries a payout left unknown and resolves another (sandbox faults);
the owner sets a message template; a viewer reads the coupons and is refused every change. Any console
error, uncaught exception, failed request or unexpected dialog fails a test."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from app.auth.principals import Role
from app.extensions import db
from app.ledger.models import AccountKind
from tests.console_ui.conftest import Live, Watched, running_campaign
from tests.console_ui.test_console_browser import Buyer, beijing_input, ledger, submit
from tests.coupons.conftest import TWO_WAY

pytestmark = pytest.mark.slow  # a browser process


def _run_jobs(live: Live, name: str) -> int:
    """Run the queued jobs ``name`` as a worker would (the live app has none)."""
    from app.queue import QueueName, get_queue

    ran = 0
    with live.app.app_context():
        for queue_name in (QueueName.DEFAULT, QueueName.PAYOUTS):
            queue = get_queue(queue_name)
            for job in queue.jobs:
                if job.func_name == name:
                    job.perform()
                    queue.remove(job)
                    ran += 1
        db.session.remove()
    return ran


@pytest.fixture(scope="module")
def campaign(live: Live) -> int:
    """A running campaign with the seed's two-way rule, funded ¥1,000 (through the console API)."""
    return running_campaign(live, name="券活动", rules=TWO_WAY, key="cb-1")


@pytest.fixture(scope="module")
def buyer(live: Live) -> Buyer:
    """The mini-program buyer (and follower) of this module's merchant."""
    return Buyer(live)


def _coupon_grants(live: Live) -> int:
    from app.rebates.models import RebateGrant

    with live.app.app_context():
        net = db.session.scalar(
            select(func.sum(RebateGrant.amount) - func.sum(RebateGrant.reversed)).where(
                RebateGrant.coupon_id.is_not(None)
            )
        )
        db.session.remove()
    return int(getattr(net, "fen", net) or 0)


def test_an_owner_runs_a_voucher_stock_and_sees_the_ledgers_figures(
    live: Live, open_page: Any, campaign: int, buyer: Buyer
) -> None:
    owner: Watched = open_page("zh-CN")
    owner.login(Role.OWNER)
    owner.open("/console/m/demo-tea/coupons")
    assert owner.text("h1") == "优惠券"
    assert owner.page.is_visible("[data-nav=coupons]")

    # Merchant coupons first: WeChat answers NO_AUTH; its reason is shown and no form for them remains.
    owner.page.select_option("[data-test=stock-kind]", "merchant_coupon")
    owner.page.fill("[data-test=stock-name]", "商家券")
    owner.page.fill("[data-test=stock-from]", beijing_input(-timedelta(minutes=5)))
    owner.page.fill("[data-test=stock-until]", beijing_input(timedelta(days=30)))
    owner.page.fill("[data-test=stock-size]", "5")
    owner.page.select_option("[data-test=stock-rule]", "two-way")
    submit(owner, "[data-test=create-stock]")
    assert owner.page.is_visible("[data-flash=error]")
    assert "2025-12-15" in owner.text("[data-test=capability-reason]")
    assert owner.page.is_visible("[data-test=merchant-coupons-off]")
    assert owner.page.locator("[data-test=stock-kind] option[value=merchant_coupon]").count() == 0

    # A voucher stock with the two-way rule's terms, created and started at the sandbox.
    owner.page.fill("[data-test=stock-name]", "满50减10")
    owner.page.fill("[data-test=stock-from]", beijing_input(-timedelta(minutes=5)))
    owner.page.fill("[data-test=stock-until]", beijing_input(timedelta(days=30)))
    owner.page.fill("[data-test=stock-size]", "10")
    owner.page.select_option("[data-test=stock-rule]", "two-way")
    owner.page.check("[data-test=channel-push]")
    submit(owner, "[data-test=create-stock]")
    assert owner.text("[data-test=stock-status]") == "进行中"
    stock_url = owner.page.url.removeprefix(live.url)
    # Paused and restarted at WeChat from the stock's page.
    submit(owner, "form[action$='/status'] button:has-text('暂停')")
    assert owner.text("[data-test=stock-status]") == "已暂停"
    assert not owner.page.is_visible("[data-test=issue-form]")  # a paused stock issues nothing
    submit(owner, "form[action$='/status'] button:has-text('重新启动')")
    assert owner.text("[data-test=stock-status]") == "进行中"

    # Issued to a follower of the official account, sent to the card pack by the send job.
    live.sandbox.post("/users/ui-buyer/follow", {"appid": _oa_appid(live)})
    owner.page.fill("[data-test=issue-consumer]", str(buyer.consumer_id))
    submit(owner, "[data-test=issue]")
    assert owner.page.is_visible("[data-flash=ok]")
    assert _run_jobs(live, "jobs.coupons.send_coupon") == 1
    owner.open(stock_url)
    assert owner.text("[data-coupon] [data-test=coupon-status]") == "已发放"

    # The follower pays ¥50: WeChat Pay applies the voucher; its cost and legs are booked.
    buyer.order("cp-1", 5000)
    owner.open(stock_url)
    owner.page.wait_for_selector("[data-chart=coupons][data-rendered]")
    assert owner.text("[data-coupon] [data-test=coupon-status]") == "已使用"
    assert owner.text("[data-figure=issued]") == "1" and owner.text("[data-figure=redeemed]") == "1"
    assert owner.figure("gmv_fen") == 5000
    assert owner.figure("cost_fen") == _coupon_grants(live) == 1000 + 500 + 250
    # WeChat's stock cut to 8 in its portal: recorded, the smaller limit issues, the difference is shown.
    owner.page.fill("input[name=wechat_max_coupons]", "8")
    submit(owner, "form[action$='/wechat-size'] button")
    assert owner.text("[data-figure=limit]") == "8"
    assert owner.page.is_visible("[data-test=limit-difference]")
    owner.page.wait_for_selector("[data-chart=coupons][data-rendered]")
    owner.shot("coupon-stock")
    owner.open("/console/m/demo-tea/coupons")
    owner.page.wait_for_selector("[data-chart=coupons][data-rendered]")
    assert owner.page.is_visible("tr.difference [data-test=limit-difference]")
    owner.shot("coupons")

    # The dashboard's coupon cost is the ledger's, counted once in the cost.
    owner.open("/console/m/demo-tea/")
    spent = 100000 - ledger(live, AccountKind.CAMPAIGN_BUDGET) - ledger(live, AccountKind.CAMPAIGN_RESERVED)
    assert owner.figure("coupon_cost_fen") == 1750
    assert owner.figure("rebate_cost_fen") + owner.figure("coupon_cost_fen") == spent
    assert owner.figure("funnel_cost_fen") == spent


def _oa_appid(live: Live) -> str:
    from app.merchants.service import get_merchant

    with live.app.app_context():
        appid = get_merchant(live.slug).oa_appid or ""
        db.session.remove()
    return appid


def test_finance_retries_an_unknown_payout_and_resolves_another(
    live: Live, open_page: Any, campaign: int, buyer: Buyer
) -> None:
    from app.payouts.models import Payout, PayoutStatus
    from app.withdrawals.models import Withdrawal
    from jobs.payouts import process_payout

    # Money for two withdrawals: ¥5 credited to the buyer's wallet from the marketing budget (a ledger
    # correction: shorter than a campaign whose rebates settle), on top of what the buyer may hold already.
    start = buyer.wallet()["available_fen"]
    _credit(live, buyer.consumer_id, 500)

    def withdraw(key: str, amount: int, reached_wechat: bool) -> int:
        live.sandbox.post(
            "/faults",
            {"api": "v3.transfer_bill", "mode": "timeout", "count": 1, "after_commit": reached_wechat},
        )
        asked = buyer.client.post(
            "/api/mp/v1/withdrawals", json={"amount_fen": amount, "idempotency_key": key}, headers=buyer.mp
        )
        assert asked.status_code == 201, asked.json
        with live.app.app_context():
            withdrawal = db.session.get(Withdrawal, asked.json["id"])
            assert withdrawal is not None and withdrawal.payout_id is not None
            payout_id = withdrawal.payout_id
            assert process_payout(payout_id) == "unknown"
            db.session.remove()
        return payout_id

    retried = withdraw("ui-unknown-1", 200, reached_wechat=True)
    resolved = withdraw("ui-unknown-2", 300, reached_wechat=False)

    finance: Watched = open_page("zh-CN")
    finance.login(Role.FINANCE)
    finance.open("/console/m/demo-tea/payouts?status=unknown")
    assert finance.page.locator("tr[data-payout]").count() == 2
    finance.shot("payouts-unknown")

    # Retry: a pass with the same bill number finds WeChat has it; the buyer confirms; paid.
    submit(finance, f"tr[data-payout='{retried}'] form[action$='/retry'] button")
    assert finance.page.is_visible("[data-flash=ok]")
    assert _run_jobs(live, "jobs.payouts.process_payout") >= 1
    with live.app.app_context():
        payout = db.session.get(Payout, retried)
        assert payout is not None and payout.status is PayoutStatus.ACCEPTED
        bill = payout.bill_no
        db.session.remove()
    live.sandbox.post(f"/transfer-bills/{bill}/confirm", {})
    with live.app.app_context():
        payout = db.session.get(Payout, retried)
        assert payout is not None
        payout.next_attempt_at = payout.created_at
        db.session.commit()
        assert process_payout(retried) == "succeeded"
        db.session.remove()

    # Resolve: WeChat never got the other bill; finance says failed (after the confirmation dialog).
    finance.open("/console/m/demo-tea/payouts?status=unknown")
    row = f"tr[data-payout='{resolved}']"
    finance.page.select_option(f"{row} select[name=outcome]", "failed")
    finance.page.fill(f"{row} input[name=reason]", "微信商户平台查无此单")
    submit(finance, f"{row} form[action$='/resolve'] button")
    assert finance.page.is_visible("[data-flash=ok]")
    finance.open("/console/m/demo-tea/payouts")
    statuses = {
        int(str(r.get_attribute("data-payout"))): r.query_selector("[data-test=payout-status]").inner_text()
        for r in finance.page.query_selector_all("tr[data-payout]")
    }
    assert statuses[retried] == "已支付" and statuses[resolved] == "失败"
    assert buyer.wallet()["available_fen"] == start + 500 - 200  # the failed ¥3 is back in the wallet
    finance.shot("payouts-resolved")


def _credit(live: Live, consumer_id: int, fen: int, *, key: str = "ui-credit") -> None:
    """``fen`` from the merchant's marketing budget to the consumer's available wallet, as one ledger entry."""
    from app.core.money import Money
    from app.ledger.accounts import consumer_accounts, merchant_accounts
    from app.ledger.models import EntryReason
    from app.ledger.service import post_entry
    from app.merchants.service import get_merchant

    with live.app.app_context():
        merchant_id = get_merchant(live.slug).id
        post_entry(
            key=f"{key}:{consumer_id}",
            reason=EntryReason.CORRECTION,
            cause_type="test",
            cause_id=str(consumer_id),
            lines=[
                (merchant_accounts(merchant_id).budget, -Money(fen)),
                (consumer_accounts(merchant_id, consumer_id).available, Money(fen)),
            ],
            merchant_id=merchant_id,
        )
        db.session.commit()
        db.session.remove()


def test_the_owner_sets_a_message_template_and_reads_the_outbox(
    live: Live, open_page: Any, campaign: int, buyer: Buyer
) -> None:
    from app.messages.models import ConsumerMessage
    from app.messages.service import collect

    owner: Watched = open_page("zh-CN")
    owner.login(Role.OWNER)
    owner.open("/console/m/demo-tea/messages")
    assert owner.text("h1") == "消息"
    owner.page.select_option("[data-test=template-kind]", "withdrawal_arrived")
    owner.page.select_option("[data-test=template-channel]", "mp_subscribe")
    owner.page.fill("[data-test=template-id-input]", "TPL-WD-1")
    owner.page.fill("[data-test=template-fields]", "thing1=title\namount2=amount\ntime3=time")
    submit(owner, "[data-test=save-template]")
    assert owner.page.is_visible("[data-flash=ok]")
    assert (
        owner.text("tr[data-template='withdrawal_arrived-mp_subscribe'] [data-test=template-id]")
        == "TPL-WD-1"
    )

    # A withdrawal that arrives: the sweep owes the buyer a message; without their consent for the template
    # (nor an official-account template) there is no channel, and the outbox says so.
    _credit(live, buyer.consumer_id, 100, key="ui-credit-message")
    asked = buyer.client.post(
        "/api/mp/v1/withdrawals",
        json={"amount_fen": 100, "idempotency_key": "ui-message-1"},
        headers=buyer.mp,
    )
    assert asked.status_code == 201, asked.json
    _pay_out(live, int(asked.json["id"]))
    with live.app.app_context():
        assert collect() >= 1
        db.session.commit()
        db.session.remove()
    _run_jobs(live, "jobs.messages.send")
    with live.app.app_context():
        owed = {m.id: m.status.value for m in db.session.scalars(select(ConsumerMessage))}
        db.session.remove()
    assert "no_channel" in owed.values()
    owner.open("/console/m/demo-tea/messages")
    shown = owner.page.query_selector_all("tr[data-message]")
    assert sorted(int(str(r.get_attribute("data-message"))) for r in shown) == sorted(owed)
    owner.open("/console/m/demo-tea/messages?status=no_channel")
    assert owner.page.locator("tr[data-message]").count() == list(owed.values()).count("no_channel")
    owner.open("/console/m/demo-tea/messages")
    owner.shot("messages")


def _pay_out(live: Live, withdrawal_id: int) -> None:
    """The withdrawal's payout through the sandbox: submitted, confirmed by the buyer in WeChat, paid."""
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
        payout.next_attempt_at = payout.created_at
        db.session.commit()
        assert process_payout(payout_id) == "succeeded"
        db.session.remove()


def test_a_viewer_reads_the_coupons_and_is_refused_every_change(live: Live, open_page: Any) -> None:
    viewer: Watched = open_page("zh-CN")
    viewer.login(Role.VIEWER)
    viewer.open("/console/m/demo-tea/coupons")
    assert viewer.page.is_visible("[data-test=read-only]")
    assert not viewer.page.is_visible("[data-test=stock-form]")
    links = viewer.page.query_selector_all("a[data-stock-name]")
    stock_path = "/console/m/demo-tea/coupons/1"
    if links:
        stock_path = str(links[0].get_attribute("href"))
        viewer.open(stock_path)
        assert viewer.page.is_visible("[data-test=read-only]")
        assert not viewer.page.is_visible("[data-test=issue-form]")
        assert not viewer.page.is_visible("[data-test=push-form]")
    viewer.open("/console/m/demo-tea/messages")
    assert not viewer.page.is_visible("[data-test=template-form]")
    token = viewer.page.get_attribute("input[name=csrf_token]", "value") or ""
    for path, form in [
        ("/console/m/demo-tea/coupons", {"name": "x", "campaign_id": "1", "max_coupons": "1"}),
        (f"{stock_path}/status", {"status": "paused"}),
        (f"{stock_path}/issue", {"consumer_id": "1", "idempotency_key": "viewer-issue"}),
        (f"{stock_path}/push", {"min_paid": "0", "days": "30"}),
        (f"{stock_path}/wechat-size", {"wechat_max_coupons": "1"}),
        (f"{stock_path}/coupons/1/revoke", {"reason": "x"}),
        ("/console/m/demo-tea/messages/templates", {"kind": "rebate_available", "channel": "oa_template"}),
    ]:
        response = viewer.page.request.post(live.url + path, form={**form, "csrf_token": token})
        assert response.status == 403, (path, response.status)
