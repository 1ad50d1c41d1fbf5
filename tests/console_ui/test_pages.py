"""The console's pages through the test client: every page renders for the roles that may read it, every
action is refused to the roles that may not (a viewer changes nothing), CSRF, escaping, headers."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.principals import Role
from app.campaigns.models import Campaign
from app.core.money import Money
from app.coupons.models import CouponKind, CouponStock, StockStatus
from app.extensions import db
from app.merchants.models import Merchant
from app.web.rule_form import SEED_DOCUMENT
from tests.console_ui.pages import Browser
from tests.factories import make_consumer, make_merchant, make_staff

XSS = "<script>alert(1)</script>"


@dataclass
class Shop:
    merchant: Merchant
    campaign_id: int
    consumer_id: int
    stock_id: int = 1


@pytest.fixture
def shop(db_session: Session) -> Shop:
    from datetime import timedelta

    from app.audit.service import CLI
    from app.campaigns.service import create_campaign
    from app.core.db import utcnow

    merchant = make_merchant("lotus")
    for role in Role:
        make_staff(f"{role.value}@lotus.test", merchant=merchant, role=role)
    make_staff("other@elsewhere.test", merchant=make_merchant("elsewhere"), role=Role.OWNER)
    now = utcnow()
    campaign = create_campaign(
        merchant_id=merchant.id,
        name=XSS,
        starts_at=now - timedelta(days=1),
        ends_at=now + timedelta(days=30),
        rules=SEED_DOCUMENT,
        actor=CLI,
    )
    consumer = make_consumer(merchant)
    stock = _stock(merchant.id, campaign.id)
    db.session.flush()
    return Shop(merchant, campaign.id, consumer.id, stock.id)


def _stock(merchant_id: int, campaign_id: int) -> CouponStock:
    """A running voucher stock as WeChat confirmed it (its name a script, as text)."""
    from datetime import timedelta

    from app.core.db import utcnow

    now = utcnow()
    stock = CouponStock(
        merchant_id=merchant_id,
        campaign_id=campaign_id,
        kind=CouponKind.VOUCHER,
        name="<script>x</script>",
        channels=["push"],
        face_value=Money(1000),
        min_spend=Money(5000),
        valid_from=now,
        valid_until=now + timedelta(days=30),
        max_coupons=10,
        wechat_max_coupons=8,
        out_request_no="S-1",
        wechat_stock_id="9000001",
        status=StockStatus.RUNNING,
        max_order=Money(5000),
        worst_case_cost=Money(1000),
    )
    db.session.add(stock)
    return stock


def signed_in(client: FlaskClient, role: Role) -> Browser:
    browser = Browser(client)
    response = browser.login(f"{role.value}@lotus.test")
    assert response.status_code == 303, response.text[:3000]
    return browser


READ_PAGES = {
    "/console/m/lotus/": set(Role),
    "/console/m/lotus/campaigns": set(Role),
    "/console/m/lotus/campaigns/{campaign}": set(Role),
    "/console/m/lotus/campaigns/new": {Role.OWNER, Role.OPERATOR},
    "/console/m/lotus/campaigns/{campaign}/edit": {Role.OWNER, Role.OPERATOR},
    "/console/m/lotus/withdrawals": {Role.OWNER, Role.FINANCE},
    "/console/m/lotus/payouts": {Role.OWNER, Role.FINANCE},
    "/console/m/lotus/payouts?status=stuck": {Role.OWNER, Role.FINANCE},
    "/console/m/lotus/reconciliation": {Role.OWNER, Role.FINANCE},
    "/console/m/lotus/consumers": set(Role),
    "/console/m/lotus/consumers/{consumer}": set(Role),
    "/console/m/lotus/staff": set(Role),
    "/console/m/lotus/shop-keys": {Role.OWNER, Role.VIEWER},
    "/console/m/lotus/audit": {Role.OWNER, Role.FINANCE, Role.VIEWER},
    "/console/m/lotus/followers": set(Role),
    "/console/m/lotus/exports": {Role.OWNER, Role.FINANCE, Role.VIEWER},
    "/console/m/lotus/coupons": set(Role),
    "/console/m/lotus/coupons/{stock}": set(Role),
    "/console/m/lotus/coupons/{stock}?status=sent&consumer_id=1&q=x": set(Role),
    "/console/m/lotus/messages": set(Role),
    "/console/m/lotus/pools": set(Role),
    "/console/m/lotus/review": {Role.OWNER, Role.REVIEWER},
    "/console/m/lotus/review?status=rejected&reason=no_trail": {Role.OWNER, Role.REVIEWER},
    "/console/m/lotus/review/decisions": {Role.OWNER, Role.REVIEWER},
    "/console/m/lotus/review/decisions?consumer_id={consumer}": {Role.OWNER, Role.REVIEWER},
    "/console/m/lotus/review/groups": {Role.OWNER, Role.REVIEWER},
    "/console/m/lotus/review/groups?consumer_id={consumer}": {Role.OWNER, Role.REVIEWER},
    "/console/m/lotus/review/policy": {Role.OWNER, Role.REVIEWER},
}


@pytest.mark.parametrize("role", list(Role))
def test_every_page_renders_for_the_roles_that_may_read_it(
    client: FlaskClient, shop: Shop, role: Role
) -> None:
    browser = signed_in(client, role)
    for template, roles in READ_PAGES.items():
        path = template.format(campaign=shop.campaign_id, consumer=shop.consumer_id, stock=shop.stock_id)
        response = browser.get(path)
        expected = 200 if role in roles else 403
        assert response.status_code == expected, (role, path, response.status_code)
        if expected == 200:
            assert "<script>alert(1)</script>" not in response.text
            assert "<script>x</script>" not in response.text
            assert "Content-Security-Policy" in response.headers


def test_a_campaign_named_like_a_script_is_text(client: FlaskClient, shop: Shop) -> None:
    browser = signed_in(client, Role.OWNER)
    for path in ("/console/m/lotus/campaigns", f"/console/m/lotus/campaigns/{shop.campaign_id}"):
        page = browser.get(path).text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert XSS not in page
    for path in ("/console/m/lotus/coupons", f"/console/m/lotus/coupons/{shop.stock_id}"):
        page = browser.get(path).text
        assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>x</script>" not in page


def test_headers(client: FlaskClient, shop: Shop) -> None:
    response = signed_in(client, Role.OWNER).get("/console/m/lotus/")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "unsafe-eval" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


def test_strangers_are_sent_to_login_or_refused(client: FlaskClient, shop: Shop) -> None:
    browser = Browser(client)
    response = browser.get("/console/m/lotus/")
    assert response.status_code == 303 and response.headers["Location"].startswith("/console/login")
    assert client.get("/console/m/lotus/").status_code == 401  # not a browser: the API's answer
    outsider = Browser(client)
    assert outsider.login("other@elsewhere.test").status_code == 303
    assert outsider.get("/console/m/lotus/").status_code == 403
    assert outsider.get("/console/m/nowhere/").status_code == 403


def test_forms_need_the_csrf_token(client: FlaskClient, shop: Shop) -> None:
    browser = signed_in(client, Role.OWNER)
    path = f"/console/m/lotus/campaigns/{shop.campaign_id}/status"
    assert browser.post(path, {"to": "active"}, csrf=False).status_code == 403
    assert browser.post(path, {"to": "active", "csrf_token": "wrong"}).status_code == 403
    assert db.session.scalar(select(Campaign.status).where(Campaign.id == shop.campaign_id)).value == "draft"
    assert browser.post(path, {"to": "active"}).status_code == 303
    db.session.expire_all()
    assert db.session.get(Campaign, shop.campaign_id).status.value == "active"  # type: ignore[union-attr]


def test_login_form_needs_its_token_and_counts_failures(client: FlaskClient, shop: Shop) -> None:
    response = client.post(
        "/console/login",
        data={"email": "owner@lotus.test", "password": "x" * 12},
        headers={"Accept": "text/html"},
    )
    assert response.status_code == 403
    browser = Browser(client)
    assert browser.login("owner@lotus.test", "wrong password!").status_code == 401
    statuses = [browser.login("owner@lotus.test", "wrong password!").status_code for _ in range(6)]
    assert 429 in statuses  # locked out, as the API


def actions(shop: Shop) -> list[tuple[str, dict[str, str]]]:
    c, k, s = shop.campaign_id, shop.consumer_id, shop.stock_id
    return [
        ("/console/m/lotus/budget/deposits", {"amount": "1.00", "idempotency_key": "viewer-deposit"}),
        (
            "/console/m/lotus/campaigns",
            {"name": "x", "starts_at": "2026-12-01T00:00", "ends_at": "2026-12-31T00:00"},
        ),
        (f"/console/m/lotus/campaigns/{c}/rules", {}),
        (f"/console/m/lotus/campaigns/{c}/fund", {"amount": "1.00", "idempotency_key": "abcdefgh12"}),
        (f"/console/m/lotus/campaigns/{c}/status", {"to": "active"}),
        (f"/console/m/lotus/campaigns/{c}/preview", {"total": "200.00"}),
        (f"/console/m/lotus/campaigns/{c}/replay", {"days": "7"}),
        ("/console/m/lotus/withdrawals/1/approve", {}),
        ("/console/m/lotus/withdrawals/1/reject", {"reason": "no"}),
        ("/console/m/lotus/payouts/1/retry", {}),
        ("/console/m/lotus/payouts/1/resolve", {"outcome": "failed", "reason": "x"}),
        (f"/console/m/lotus/consumers/{k}/ban", {"reason": "x"}),
        (f"/console/m/lotus/consumers/{k}/unban", {}),
        ("/console/m/lotus/staff", {"email": "viewer@lotus.test", "role": "owner"}),
        ("/console/m/lotus/staff/1", {"role": "owner"}),
        ("/console/m/lotus/shop-keys", {"name": "k"}),
        ("/console/m/lotus/shop-keys/1/rotate", {}),
        ("/console/m/lotus/shop-keys/1/revoke", {}),
        ("/console/m/lotus/followers/qr-codes", {"purpose": "channel", "channel": "x"}),
        ("/console/m/lotus/followers/replies", {"trigger": "subscribe", "content": "hi"}),
        ("/console/m/lotus/followers/replies/1/delete", {}),
        ("/console/m/lotus/coupons", {"name": "x", "campaign_id": str(c), "max_coupons": "5"}),
        (f"/console/m/lotus/coupons/{s}/status", {"status": "paused"}),
        (f"/console/m/lotus/coupons/{s}/submit", {}),
        (f"/console/m/lotus/coupons/{s}/wechat-size", {"wechat_max_coupons": "1"}),
        (f"/console/m/lotus/coupons/{s}/issue", {"consumer_id": str(k), "idempotency_key": "viewer-1"}),
        (f"/console/m/lotus/coupons/{s}/push", {"min_paid": "0", "days": "30"}),
        (f"/console/m/lotus/coupons/{s}/coupons/1/revoke", {"reason": "x"}),
        ("/console/m/lotus/coupons/capabilities/merchant_coupon/ask-again", {}),
        ("/console/m/lotus/messages/templates", {"kind": "rebate_available", "channel": "oa_template"}),
        ("/console/m/lotus/pools", {"name": "x", "campaign_id": str(c), "form_key": "viewer-key-1"}),
        ("/console/m/lotus/pools/1/open", {}),
        ("/console/m/lotus/pools/1/close", {}),
        ("/console/m/lotus/review/1/approve", {}),
        ("/console/m/lotus/review/1/reject", {"reason": "x"}),
        ("/console/m/lotus/review/1/ban", {"reason": "x", "group": "on"}),
        ("/console/m/lotus/review/bulk", {"hold_ids": "1", "action": "approve"}),
        ("/console/m/lotus/review/dry-run", {"days": "7"}),
        ("/console/m/lotus/review/policy", {"enforce": "on"}),
    ]


def test_a_viewer_is_refused_every_change(client: FlaskClient, shop: Shop) -> None:
    browser = signed_in(client, Role.VIEWER)
    for path, data in actions(shop):
        response = browser.post(path, data)
        assert response.status_code == 403, (path, response.status_code)
    # and is shown no action on the pages it reads
    page = browser.get(f"/console/m/lotus/campaigns/{shop.campaign_id}").text
    assert 'data-test="fund"' not in page and 'data-test="preview"' not in page
    assert 'data-test="read-only"' in page


def test_every_action_endpoint_is_covered(app: Flask) -> None:
    """The list above names every form action of the console (so the viewer test misses none)."""
    posts = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("console_pages.") and "POST" in (rule.methods or set())
    }
    # Open to a viewer or to anyone, on purpose: logging in and out, and exports (reads).
    paths = ["/console/login", "/console/logout", "/console/m/lotus/exports"]
    paths += [path for path, _ in actions(Shop(None, 1, 1))]  # type: ignore[arg-type]

    def covered(rule: str) -> bool:
        pattern = re.sub(r"<[^>]+>", "[^/]+", rule)  # each variable part: one path segment
        return any(re.fullmatch(pattern, path) for path in paths)

    assert {rule for rule in posts if not covered(rule)} == set()
