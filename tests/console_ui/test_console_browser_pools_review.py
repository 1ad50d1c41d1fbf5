"""The red-packet pool and review queue pages in Chromium (a database of this module's own): the owner
creates and opens a pool, a consumer grabs through the mini-program API and the pool's page shows the grab
as the ledger has it; with the risk policy enforcing, a reviewer approves one held reward and rejects
another, and the figures match the ledger; a viewer reads the pools, is refused the queue and every
change. Any console error, uncaught exception, failed request or unexpected dialog fails a test."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.audit.service import CLI
from app.auth.principals import Role
from app.extensions import db
from app.ledger.checks import run_checks
from app.ledger.models import AccountKind
from tests.console_ui.conftest import PASSWORD, STAFF, Live, Watched, running_campaign
from tests.console_ui.test_console_browser import Buyer, beijing_input, ledger, submit

pytestmark = pytest.mark.slow  # a browser process

REVIEWER = "reviewer@demo-tea.test"
RULES = {
    "rules": [{"id": "ratio", "kind": "ratio", "priority": 5, "stacking": "combinable", "rate_bp": 1000}]
}


@pytest.fixture(scope="module")
def campaign(live: Live) -> int:
    """A running campaign paying 10% back on every order, funded ¥1,000 (through the console API)."""
    return running_campaign(live, name="红包池活动", rules=RULES, key="pr-1")


@pytest.fixture(scope="module")
def buyer(live: Live) -> Buyer:
    return Buyer(live)


@pytest.fixture(scope="module")
def reviewer_account(live: Live) -> str:
    from app.merchants.service import get_merchant
    from app.staff.service import create_staff, get_staff_by_email, grant_role

    with live.app.app_context():
        merchant = get_merchant(live.slug)
        create_staff(email=REVIEWER, display_name="reviewer", password=PASSWORD, actor=CLI)
        grant_role(
            account=get_staff_by_email(REVIEWER), merchant_id=merchant.id, role=Role.REVIEWER, actor=CLI
        )
        db.session.commit()
        db.session.remove()
    return REVIEWER


def _login(page: Watched, email: str) -> None:
    page.open("/console/login")
    page.page.fill("input[name=email]", email)
    page.page.fill("input[name=password]", PASSWORD)
    with page.page.expect_navigation():
        page.page.click("form button[type=submit]")
    page.page.wait_for_load_state("load")


def _checks_clean(live: Live) -> None:
    with live.app.app_context():
        assert [(r.name, r.violations) for r in run_checks() if r.violations] == []
        db.session.remove()


def test_an_owner_creates_and_opens_a_pool_and_sees_a_grab(
    live: Live, open_page: Any, campaign: int, buyer: Buyer
) -> None:
    from app.pools.models import Pool, PoolGrant

    owner: Watched = open_page("zh-CN")
    owner.login(Role.OWNER)
    owner.open("/console/m/demo-tea/pools")
    assert owner.text("h1") == "红包池"
    assert owner.page.is_visible("[data-nav=red_packet_pools]")
    owner.page.select_option("[data-test=pool-campaign]", str(campaign))
    owner.page.fill("[data-test=pool-name]", "周末拼手气")
    owner.page.fill("[data-test=pool-total]", "10.00")
    owner.page.fill("[data-test=pool-count]", "3")
    owner.page.select_option("[data-test=pool-split]", "random")
    owner.page.fill("[data-test=pool-from]", beijing_input(-timedelta(minutes=5)))
    owner.page.fill("[data-test=pool-until]", beijing_input(timedelta(hours=3)))
    owner.page.fill("[data-test=tier-friends-0]", "2")
    owner.page.fill("[data-test=tier-reward-0]", "1.00")
    submit(owner, "[data-test=create-pool]")
    assert owner.text("[data-test=pool-status]") == "草稿"
    pool_url = owner.page.url.removeprefix(live.url)
    pool_id = int(pool_url.rsplit("/", 1)[1])
    reserved_before = ledger(live, AccountKind.CAMPAIGN_RESERVED)

    submit(owner, "[data-test=open-pool]")  # its confirmation is accepted
    assert owner.text("[data-test=pool-status]") == "进行中"
    assert ledger(live, AccountKind.CAMPAIGN_RESERVED) == reserved_before + 1000
    assert owner.figure("reserved_fen") == 1000

    # A consumer grabs through the mini-program API.
    grabbed = buyer.client.post(f"/api/mp/v1/pools/{pool_id}/grab", json={}, headers=buyer.mp)
    assert grabbed.status_code == 201, grabbed.json
    amount = int(grabbed.json["amount_fen"])
    owner.open(pool_url)
    assert owner.page.get_attribute("[data-figure=grabbed]", "data-figure") == "grabbed"
    assert owner.text("[data-figure=grabbed]") == "1"
    assert owner.figure("grabbed_fen") == amount
    assert owner.figure("unclaimed_fen") == 1000 - amount
    row = owner.page.locator(f"[data-grant] [data-test=grant-consumer]:text-is('{buyer.consumer_id}')")
    assert row.count() == 1
    assert owner.page.get_attribute("[data-test=grant-amount]", "data-fen") == str(amount)
    assert owner.page.is_visible("[data-chart=pool][data-rendered='1']")
    with live.app.app_context():
        grant = db.session.scalars(select(PoolGrant).where(PoolGrant.pool_id == pool_id)).one()
        pool = db.session.get(Pool, pool_id)
        assert pool is not None and (grant.amount.fen, grant.consumer_id) == (amount, buyer.consumer_id)
        db.session.remove()
    # The grab moved the share's reservation to the consumer's packet: the campaign's reserve is unchanged.
    assert ledger(live, AccountKind.CAMPAIGN_RESERVED) == reserved_before + 1000
    _checks_clean(live)
    owner.shot("pool")
    owner.open("/console/m/demo-tea/pools")
    assert owner.text(f"[data-figure=grabbed_{pool_id}]") == "1"
    assert owner.figure(f"grabbed_fen_{pool_id}") == amount
    owner.shot("pools")


def test_a_reviewer_approves_one_held_reward_and_rejects_another(
    live: Live, open_page: Any, campaign: int, buyer: Buyer, reviewer_account: str
) -> None:
    from app.merchants.service import get_merchant
    from app.risk.service import update_policy

    with live.app.app_context():
        update_policy(merchant_id=get_merchant(live.slug).id, changes={"enforce": True}, actor=CLI)
        db.session.commit()
        db.session.remove()
    budget_before = ledger(live, AccountKind.CAMPAIGN_BUDGET)
    pending_before = ledger(live, AccountKind.CONSUMER_PENDING, buyer.consumer_id)
    # No browse or cart before paying: each order's 10% is held (no_trail).
    first = buyer.order("HELD-1", 10000)
    second = buyer.order("HELD-2", 20000)
    assert ledger(live, AccountKind.CONSUMER_PENDING, buyer.consumer_id) == pending_before + 3000
    assert ledger(live, AccountKind.CAMPAIGN_BUDGET) == budget_before - 3000

    reviewer: Watched = open_page("zh-CN")
    _login(reviewer, reviewer_account)
    reviewer.open("/console/m/demo-tea/review")
    assert reviewer.page.is_visible("[data-nav=review_queue]")
    holds = {
        int(str(el.get_attribute("data-hold"))): el
        for el in reviewer.page.query_selector_all("tr[data-hold]")
    }
    assert len(holds) == 2
    by_order = _holds_by_order(live)
    first_hold, second_hold = by_order[first], by_order[second]
    assert reviewer.figure(f"held_{first_hold}") == 1000 and reviewer.figure(f"held_{second_hold}") == 2000
    assert reviewer.page.locator(f"tr[data-hold='{first_hold}'] [data-reason=no_trail]").count() == 1
    reviewer.shot("review-queue")

    submit(reviewer, f"[data-test=approve-{first_hold}]")
    assert reviewer.page.is_visible("[data-flash=ok]")
    reviewer.page.fill(f"[data-test=reject-reason-{second_hold}]", "刷单")
    submit(reviewer, f"[data-test=reject-{second_hold}]")
    assert reviewer.page.is_visible("[data-flash=ok]")
    assert reviewer.page.locator("tr[data-hold]").count() == 0  # the queue is empty

    # The ledger: the approved 10% stays pending (it settles), the rejected 20.00 is back in the budget.
    assert ledger(live, AccountKind.CONSUMER_PENDING, buyer.consumer_id) == pending_before + 1000
    assert ledger(live, AccountKind.CAMPAIGN_BUDGET) == budget_before - 1000
    reviewer.open("/console/m/demo-tea/review?status=rejected")
    assert reviewer.figure(f"reversed_{second_hold}") == 2000
    reviewer.open("/console/m/demo-tea/review?status=approved")
    assert reviewer.figure(f"held_{first_hold}") == 1000
    _checks_clean(live)

    reviewer.open("/console/m/demo-tea/review/decisions")
    assert reviewer.page.locator("[data-decision] [data-reason=no_trail]").count() >= 2
    reviewer.shot("review-decisions")
    reviewer.open("/console/m/demo-tea/review/policy")
    assert reviewer.page.is_visible("[data-test=mode-enforce]")
    reviewer.page.fill("[data-test=policy-trail_window_minutes]", "0")
    submit(reviewer, "[data-test=dry-run]")
    assert reviewer.page.is_visible("[data-test=dry-run-result]")
    assert reviewer.text("[data-figure=dry_hold]") == "0"  # without the trail check nothing is held
    assert reviewer.page.is_visible("[data-chart=dryrun][data-rendered='1']")
    reviewer.shot("review-policy")
    reviewer.open(f"/console/m/demo-tea/review/groups?consumer_id={buyer.consumer_id}")
    reviewer.shot("review-groups")


def _holds_by_order(live: Live) -> dict[int, int]:
    from app.risk.models import RiskHold

    with live.app.app_context():
        found = {int(h.order_id): int(h.id) for h in db.session.scalars(select(RiskHold))}
        db.session.remove()
    return found


def test_a_viewer_reads_the_pools_and_is_refused_the_queue_and_every_change(
    live: Live, open_page: Any, campaign: int
) -> None:
    viewer: Watched = open_page("zh-CN")
    viewer.login(Role.VIEWER)
    viewer.open("/console/m/demo-tea/pools")
    assert viewer.page.is_visible("[data-test=read-only]")
    assert not viewer.page.is_visible("[data-test=pool-form]")
    assert not viewer.page.is_visible("[data-nav=review_queue]")
    link = viewer.page.query_selector("a[data-pool-name]")
    assert link is not None
    pool_url = str(link.get_attribute("href"))
    viewer.open(pool_url)
    assert not viewer.page.is_visible("[data-test=open-pool]") and not viewer.page.is_visible(
        "[data-test=close-pool]"
    )
    token = viewer.page.get_attribute("input[name=csrf_token]", "value")
    pool_id = re.sub(r"\D", "", pool_url.rsplit("/", 1)[1])
    for path, form in [
        ("/console/m/demo-tea/pools", {"name": "x", "form_key": "viewer-key-1"}),
        (f"/console/m/demo-tea/pools/{pool_id}/open", {}),
        (f"/console/m/demo-tea/pools/{pool_id}/close", {}),
        ("/console/m/demo-tea/review/1/approve", {}),
        ("/console/m/demo-tea/review/1/reject", {"reason": "x"}),
        ("/console/m/demo-tea/review/1/ban", {"reason": "x"}),
        ("/console/m/demo-tea/review/bulk", {"hold_ids": "1", "action": "approve"}),
        ("/console/m/demo-tea/review/dry-run", {"days": "7"}),
        ("/console/m/demo-tea/review/policy", {"enforce": "on"}),
    ]:
        response = viewer.page.request.post(live.url + path, form={**form, "csrf_token": token or ""})
        assert response.status == 403, (path, response.status)
    viewer.open("/console/m/demo-tea/review")
    assert viewer.page.is_visible("[data-error='403']")
    viewer.problems.clear()  # the 403 page is the expected answer, not a browser problem


def test_one_create_form_sent_twice_at_once_makes_one_pool(live: Live, campaign: int) -> None:
    """Two submits of one form at the same moment (two tabs, two sessions, real commits): one pool."""
    import threading

    from app.pools.models import Pool
    from tests.console_ui.pages import Browser

    tabs = [Browser(live.app.test_client()) for _ in range(2)]
    for tab in tabs:
        assert tab.login(STAFF[Role.OWNER], PASSWORD).status_code == 303
    form = {
        "form_key": "same-form-twice-1",
        "campaign_id": str(campaign),
        "name": "double submit",
        "total": "3.00",
        "count": "3",
        "split": "fixed",
        "audience": "all",
        "payout": "red_packet",
        "starts_at": beijing_input(-timedelta(minutes=5)),
        "ends_at": beijing_input(timedelta(hours=1)),
    }
    gate = threading.Barrier(len(tabs))
    answers: list[Any] = []

    def send(tab: Browser) -> None:
        gate.wait()
        answers.append(tab.post(f"/console/m/{live.slug}/pools", form))

    threads = [threading.Thread(target=send, args=(tab,)) for tab in tabs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [a.status_code for a in answers] == [303, 303]
    with live.app.app_context():
        made = db.session.scalars(select(Pool).where(Pool.name == "double submit")).all()
        db.session.remove()
    assert len(made) == 1
