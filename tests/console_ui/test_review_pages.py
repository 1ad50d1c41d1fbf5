"""The review queue pages act as the risk API does: held rewards are listed with their reasons, amounts and
the decision's scores; a reviewer approves one (it settles), rejects another with a reason (reversed to
the campaign budget, exactly) and bans with the linked group; bulk actions report what was already
resolved; decisions, linked groups and the policy with its dry run are shown; only the owner saves the
policy; operators, finance and viewers are refused every page and action; CSRF."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from app.auth.principals import Role
from app.consumers.models import Consumer, ConsumerStatus
from app.extensions import db
from app.ledger.accounts import campaign_accounts, consumer_accounts
from app.risk.models import HoldStatus, RiskHold, RiskPolicy
from tests.console_ui.pages import Browser
from tests.factories import make_staff
from tests.invitations.helpers import bind, invite_code
from tests.payments.conftest import Shop
from tests.risk.conftest import Person, campaign, device_token, ledger_clean, person, shop

__all__ = ["campaign", "shop"]


def _browser(shop: Shop, role: Role) -> Browser:
    staff = make_staff(merchant=shop.merchant, role=role)
    db.session.commit()
    browser = Browser(shop.client.application.test_client())
    assert browser.login(staff.email).status_code == 303
    return browser


def _hold(db_session: Session, order_id: int) -> RiskHold:
    hold = db_session.scalar(
        select(RiskHold).where(RiskHold.order_id == order_id).execution_options(populate_existing=True)
    )
    assert hold is not None
    return hold


def _no_trail_order(shop: Shop, name: str, ip: str, total_fen: int) -> tuple[Person, int]:
    """A consumer paying straight away (no browse, no cart): the order's rewards are held (no_trail)."""
    who = person(shop, name, ip=ip, device=device_token(shop.client))
    return who, who.order(f"{name.upper()}-1", total_fen)


def _said(browser: Browser, response: TestResponse) -> tuple[list[str], str]:
    while response.status_code in (302, 303):
        response = browser.get(response.headers["Location"])
    return re.findall(r'data-flash="\w+">([^<]*)<', response.text), response.text


def test_a_reviewer_approves_one_rejects_another_and_the_ledger_agrees(
    shop: Shop, campaign: int, db_session: Session
) -> None:
    slug = shop.merchant.slug
    carol, carol_order = _no_trail_order(shop, "carol", "198.51.100.30", 20000)
    erin, erin_order = _no_trail_order(shop, "erin", "198.51.100.31", 30000)
    carol_hold, erin_hold = _hold(db_session, carol_order), _hold(db_session, erin_order)
    reviewer = _browser(shop, Role.REVIEWER)

    queue = reviewer.get(f"/console/m/{slug}/review")
    assert queue.status_code == 200 and 'data-nav="review_queue"' in queue.text
    page = queue.text
    assert re.search(rf'data-figure="held_{carol_hold.id}">¥20\.00', page)
    assert re.search(rf'data-fen="2000" data-figure="held_{carol_hold.id}"', page)
    assert re.search(rf'data-fen="3000" data-figure="held_{erin_hold.id}"', page)
    assert page.count('data-reason="no_trail"') == 2
    assert page.count("下单前无浏览/加购") >= 2  # the reason code in words (and in the filter)
    # The reason filter keeps what has it; an unknown reason shows nothing.
    assert reviewer.get(f"/console/m/{slug}/review?reason=self_referral").text.count("data-hold=") == 0

    budget = campaign_accounts(shop.merchant.id, campaign).budget
    before = budget.balance.fen
    approved = reviewer.post(f"/console/m/{slug}/review/{carol_hold.id}/approve", {"note": "checked"})
    assert approved.status_code == 303
    rejected = reviewer.post(f"/console/m/{slug}/review/{erin_hold.id}/reject", {"reason": "<b>fake</b>"})
    assert rejected.status_code == 303
    said, _ = _said(reviewer, rejected)
    assert said
    assert _hold(db_session, carol_order).status is HoldStatus.APPROVED
    erin_row = _hold(db_session, erin_order)
    assert (erin_row.status, erin_row.reversed_fen, erin_row.resolution) == (
        HoldStatus.REJECTED,
        3000,
        "<b>fake</b>",
    )
    db_session.refresh(budget)
    assert budget.balance.fen == before + 3000
    assert consumer_accounts(shop.merchant.id, erin.consumer_id).pending.balance.fen == 0
    assert consumer_accounts(shop.merchant.id, carol.consumer_id).pending.balance.fen == 2000
    ledger_clean()

    resolved = reviewer.get(f"/console/m/{slug}/review?status=rejected").text
    assert "&lt;b&gt;fake&lt;/b&gt;" in resolved and "<b>fake</b>" not in resolved
    assert re.search(rf'data-figure="reversed_{erin_hold.id}" data-fen="3000"', resolved)
    # Resolving again is the API's 409, said on the page; nothing moves.
    again = reviewer.post(f"/console/m/{slug}/review/{carol_hold.id}/reject", {"reason": "late"})
    said, _ = _said(reviewer, again)
    assert said and "approved" in said[0]
    db_session.refresh(budget)
    assert budget.balance.fen == before + 3000
    # A rejection needs a reason.
    _, dave_order = _no_trail_order(shop, "dave", "198.51.100.32", 10000)
    empty = reviewer.post(
        f"/console/m/{slug}/review/{_hold(db_session, dave_order).id}/reject", {"reason": ""}
    )
    said, _ = _said(reviewer, empty)
    assert said and "reason" in said[-1]
    assert _hold(db_session, dave_order).status is HoldStatus.HELD


def test_bulk_and_ban_with_the_linked_group(shop: Shop, campaign: int, db_session: Session) -> None:
    slug = shop.merchant.slug
    phone = device_token(shop.client)
    alice = Person(shop, "198.51.100.10", phone)
    bob = person(shop, "bob", ip="198.51.100.11", device=phone)
    alice.browse()
    alice.order("ALICE-1", 3000)
    assert bind(bob.shop, invite_code(alice.shop)).status_code == 201
    bob.browse()
    ring_order = bob.order("BOB-1", 10000)
    _, one = _no_trail_order(shop, "fay", "198.51.100.40", 10000)
    _, two = _no_trail_order(shop, "gus", "198.51.100.41", 10000)
    reviewer = _browser(shop, Role.REVIEWER)

    ring = _hold(db_session, ring_order)
    groups = reviewer.get(f"/console/m/{slug}/review/groups?consumer_id={bob.consumer_id}").text
    assert f'data-member="{alice.consumer_id}"' in groups and f'data-member="{bob.consumer_id}"' in groups
    assert f'data-link="{bob.consumer_id}-device"' in groups
    decisions = reviewer.get(f"/console/m/{slug}/review/decisions?consumer_id={bob.consumer_id}").text
    assert "data-decision=" in decisions and 'data-reason="self_referral"' in decisions

    banned = reviewer.post(f"/console/m/{slug}/review/{ring.id}/ban", {"reason": "ring", "group": "on"})
    assert banned.status_code == 303
    for consumer_id in (alice.consumer_id, bob.consumer_id):
        consumer = db_session.get(Consumer, consumer_id)
        assert consumer is not None
        db_session.refresh(consumer)
        assert consumer.status is ConsumerStatus.BANNED
    assert _hold(db_session, ring_order).status is HoldStatus.REJECTED

    # Bulk: a reject needs a reason; with one, both are rejected, an already resolved one is reported.
    ids = [str(_hold(db_session, one).id), str(_hold(db_session, two).id), str(ring.id)]
    no_reason = reviewer.post(f"/console/m/{slug}/review/bulk", {"hold_ids": ids, "action": "reject"})
    said, _ = _said(reviewer, no_reason)
    assert said and "reason" in said[-1]
    assert _hold(db_session, one).status is HoldStatus.HELD
    done = reviewer.post(
        f"/console/m/{slug}/review/bulk", {"hold_ids": ids, "action": "reject", "reason": "farm"}
    )
    _, page = _said(reviewer, done)
    assert 'data-test="bulk-result"' in page and re.search(r'data-figure="bulk_done">2<', page)
    assert f"#{ring.id} <code>conflict</code>" in page
    assert {_hold(db_session, one).status, _hold(db_session, two).status} == {HoldStatus.REJECTED}
    ledger_clean()


def test_the_policy_page_the_dry_run_and_only_the_owner_saves(
    shop: Shop, campaign: int, db_session: Session
) -> None:
    slug = shop.merchant.slug
    _no_trail_order(shop, "carol", "198.51.100.30", 20000)
    reviewer = _browser(shop, Role.REVIEWER)
    page = reviewer.get(f"/console/m/{slug}/review/policy").text
    assert 'data-test="mode-enforce"' in page  # the fixture's merchant enforces
    assert 'data-test="owner-only"' in page and 'data-test="save-policy"' not in page
    form = _policy_form(page)

    # The dry run with the trail check off: the held order would have been allowed; nothing written.
    version = db_session.scalar(select(RiskPolicy.version).where(RiskPolicy.merchant_id == shop.merchant.id))
    tried = reviewer.post(
        f"/console/m/{slug}/review/dry-run", form | {"trail_window_minutes": "0", "days": "7"}
    )
    _, shown = _said(reviewer, tried)
    assert 'data-test="dry-run-result"' in shown
    hold_figure = re.search(r'data-figure="dry_hold">(\d+)<', shown)
    assert hold_figure and int(hold_figure.group(1)) == 0
    assert re.search(r'data-setting="trail_window_minutes" class="difference"', shown)
    untouched = reviewer.post(f"/console/m/{slug}/review/dry-run", form | {"days": "7"})
    _, shown = _said(reviewer, untouched)
    hold_figure = re.search(r'data-figure="dry_hold">(\d+)<', shown)
    assert hold_figure and int(hold_figure.group(1)) >= 1
    assert (
        db_session.scalar(select(RiskPolicy.version).where(RiskPolicy.merchant_id == shop.merchant.id))
        == version
    )
    bad = reviewer.post(f"/console/m/{slug}/review/dry-run", form | {"ip_claims_per_day": "-1"})
    said, _ = _said(reviewer, bad)
    assert said and "ip_claims_per_day" in said[0]

    # Saving is the owner's.
    assert reviewer.post(f"/console/m/{slug}/review/policy", form).status_code == 403
    owner = _browser(shop, Role.OWNER)
    owner_page = owner.get(f"/console/m/{slug}/review/policy").text
    assert 'data-test="save-policy"' in owner_page
    saved = owner.post(f"/console/m/{slug}/review/policy", form | {"user_claims_per_day": "9"})
    assert saved.status_code == 303
    row = db_session.scalar(
        select(RiskPolicy)
        .where(RiskPolicy.merchant_id == shop.merchant.id)
        .execution_options(populate_existing=True)
    )
    assert row is not None and row.version == (version or 0) + 1
    assert row.settings["user_claims_per_day"] == 9 and row.settings["enforce"] is True


def _policy_form(page: str) -> dict[str, object]:
    """The policy form as the browser would send it (checked boxes only)."""
    form: dict[str, object] = {}
    for name, value in re.findall(r'<input name="(\w+)" value="([^"]*)"', page):
        form[name] = value
    for name in re.findall(r'<input type="checkbox" name="(\w+)" checked', page):
        form[name] = "on"
    form["link_by"] = re.findall(r'name="link_by" value="(\w+)" checked', page)
    return form


@pytest.mark.parametrize("role", list(Role))
def test_only_a_reviewer_or_the_owner_opens_the_queue_and_acts(
    shop: Shop, campaign: int, role: Role, db_session: Session
) -> None:
    slug = shop.merchant.slug
    _, order = _no_trail_order(shop, "carol", "198.51.100.30", 20000)
    hold = _hold(db_session, order)
    browser = _browser(shop, role)
    allowed = role in (Role.OWNER, Role.REVIEWER)
    home = browser.get(f"/console/m/{slug}/").text
    assert ('data-nav="review_queue"' in home) is allowed
    for path in ("review", "review/decisions", "review/groups", "review/policy"):
        assert browser.get(f"/console/m/{slug}/{path}").status_code == (200 if allowed else 403), path
    if allowed:
        return
    for path, form in (
        (f"review/{hold.id}/approve", {}),
        (f"review/{hold.id}/reject", {"reason": "x"}),
        (f"review/{hold.id}/ban", {"reason": "x", "group": "on"}),
        ("review/bulk", {"hold_ids": [str(hold.id)], "action": "approve"}),
        ("review/dry-run", {"days": "7"}),
        ("review/policy", {"enforce": "on"}),
    ):
        assert browser.post(f"/console/m/{slug}/{path}", form).status_code == 403, path
    assert _hold(db_session, order).status is HoldStatus.HELD


def test_csrf_is_required_for_every_review_action(shop: Shop, campaign: int, db_session: Session) -> None:
    slug = shop.merchant.slug
    _, order = _no_trail_order(shop, "carol", "198.51.100.30", 20000)
    hold = _hold(db_session, order)
    reviewer = _browser(shop, Role.REVIEWER)
    for path in (f"review/{hold.id}/approve", f"review/{hold.id}/reject", "review/bulk", "review/dry-run"):
        forged = reviewer.post(
            f"/console/m/{slug}/{path}",
            {"reason": "x", "hold_ids": [str(hold.id)], "action": "approve"},
            csrf=False,
        )
        assert forged.status_code == 403, path
    assert _hold(db_session, order).status is HoldStatus.HELD


def test_an_anonymous_browser_is_sent_to_the_login(client: FlaskClient, shop: Shop) -> None:
    answer = client.get(f"/console/m/{shop.merchant.slug}/review", headers={"Accept": "text/html"})
    assert answer.status_code == 303 and "/console/login" in answer.headers["Location"]
    assert client.get(f"/console/m/{shop.merchant.slug}/review").status_code == 401


def test_the_held_rewards_widget_reads_in_three_round_trips(
    shop: Shop, campaign: int, db_session: Session
) -> None:
    from app.risk import review
    from app.web.queries import decision_scores
    from tests.console_ui.test_dashboard import statements

    for n in range(3):
        _no_trail_order(shop, f"p{n}", f"198.51.100.{50 + n}", 10000)
    merchant_id = shop.merchant.id
    db_session.expire_all()
    with statements() as seen:
        holds = review.list_holds(merchant_id=merchant_id)
        scores = decision_scores(merchant_id=merchant_id, decision_ids=[h["decision_id"] for h in holds])
    assert len(holds) == 3 and len(scores) == 3 and all(scores.values())
    # The service's two (holds, then what they hold) and one for the decisions' scores.
    assert len(seen) == 3


def test_a_suspended_merchant_still_reviews_but_opens_no_pool(
    shop: Shop, campaign: int, db_session: Session
) -> None:
    """As the API: resolving holds winds down (allowed while suspended); creating a pool does not."""
    from app.merchants.models import MerchantStatus

    slug = shop.merchant.slug
    _, order = _no_trail_order(shop, "carol", "198.51.100.30", 20000)
    hold = _hold(db_session, order)
    owner = _browser(shop, Role.OWNER)
    shop.merchant.status = MerchantStatus.SUSPENDED
    db.session.commit()
    refused = owner.post(f"/console/m/{slug}/pools", {"name": "x", "form_key": "suspended-1"})
    assert refused.status_code == 403
    rejected = owner.post(f"/console/m/{slug}/review/{hold.id}/reject", {"reason": "suspended shop"})
    assert rejected.status_code == 303
    assert _hold(db_session, order).status is HoldStatus.REJECTED
    ledger_clean()


def test_the_pages_in_english(shop: Shop, campaign: int, db_session: Session) -> None:
    slug = shop.merchant.slug
    _no_trail_order(shop, "carol", "198.51.100.30", 20000)
    owner = _browser(shop, Role.OWNER)
    owner.client.set_cookie("hongli_console_lang", "en")
    queue = owner.get(f"/console/m/{slug}/review").text
    assert "no browse/cart before the order" in queue and "reason_no_trail" not in queue
    assert ">held<" in queue and "hold_held" not in queue
    pools = owner.get(f"/console/m/{slug}/pools").text
    assert "random (拼手气)" in pools and "split_random" not in pools
