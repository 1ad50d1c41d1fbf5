"""The coupons pages act as the coupon API does, against the WeChat sandbox: an operator creates a voucher
stock (started at WeChat), issues one coupon per form key, pushes to a segment and sees the result, pauses
and restarts; the metrics and limits shown are the service's; merchant coupons are offered only while WeChat
allows them, and once it said NO_AUTH the reason is shown and no form for them; a merchant coupon is
revoked from its stock's page; a viewer reads and is refused every change."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from app.auth.principals import Role
from app.core.db import utcnow
from app.coupons import metrics
from app.coupons.models import Coupon, CouponStatus, CouponStock
from app.extensions import db
from app.ledger.accounts import campaign_accounts
from app.web.blueprint import BEIJING
from tests.console_ui.pages import Browser
from tests.console_ui.test_dashboard import statements
from tests.coupons.conftest import WORST_CASE, Marketing, ledger_clean, marketing, run_jobs, shop
from tests.factories import make_staff

__all__ = ["marketing", "shop"]

NAME = "<script>x</script>"  # 18 characters: a stock name is at most 20


def _local(moment_offset: timedelta) -> str:
    return (utcnow() + moment_offset).astimezone(BEIJING).strftime("%Y-%m-%dT%H:%M")


def _browser(marketing: Marketing, role: Role) -> Browser:
    staff = make_staff(merchant=marketing.shop.merchant, role=role)
    db.session.commit()
    browser = Browser(marketing.shop.client.application.test_client())
    assert browser.login(staff.email).status_code == 303
    return browser


def _create_form(marketing: Marketing, **changes: str) -> dict[str, str]:
    return {
        "kind": "voucher",
        "name": NAME,
        "campaign_id": str(marketing.campaign_id),
        "rule_id": "two-way",
        "face_value": "",
        "min_spend": "",
        "valid_from": _local(-timedelta(minutes=5)),
        "valid_until": _local(timedelta(days=30)),
        "max_coupons": "5",
        "channels": "push",
    } | changes


def _flash(html: str) -> list[str]:
    return re.findall(r'data-flash="(\w+)"', html)


def _said(browser: Browser, response: TestResponse) -> list[str]:
    """The messages shown where a posted form sent the browser (followed like a browser)."""
    while response.status_code in (302, 303):
        response = browser.get(response.headers["Location"])
    return re.findall(r'data-flash="\w+">([^<]*)<', response.text)


def test_an_operator_creates_issues_pushes_pauses_and_restarts(
    marketing: Marketing, db_session: Session
) -> None:
    shop = marketing.shop
    slug = shop.merchant.slug
    owner = _browser(marketing, Role.OPERATOR)
    # The consumer paid ¥200 today: in the segment of a push to those who paid at least ¥100.
    shop.pay(shop.register("SEG-1", 20000)["id"])

    created = owner.post(f"/console/m/{slug}/coupons", _create_form(marketing))
    assert created.status_code == 303, created.text[:2000]
    stock = db_session.scalars(select(CouponStock)).one_or_none()
    assert stock is not None, _said(owner, created)
    assert created.headers["Location"].endswith(f"/coupons/{stock.id}")
    assert (stock.status.value, stock.kind.value, stock.worst_case_cost.fen) == (
        "running",
        "voucher",
        WORST_CASE,
    )
    assert stock.wechat_stock_id  # created and started at the sandbox

    listed = owner.get(f"/console/m/{slug}/coupons").text
    assert "&lt;script&gt;x&lt;/script&gt;" in listed and NAME not in listed
    assert f'data-stock="{stock.id}"' in listed

    # Issue to one consumer: the form's key makes a double submit one coupon.
    page = owner.get(f"/console/m/{slug}/coupons/{stock.id}").text
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page)
    assert key
    form = {"consumer_id": str(shop.consumer_id), "idempotency_key": key.group(1)}
    assert owner.post(f"/console/m/{slug}/coupons/{stock.id}/issue", form).status_code == 303
    assert owner.post(f"/console/m/{slug}/coupons/{stock.id}/issue", form).status_code == 303
    assert db_session.scalar(select(func.count(Coupon.id))) == 1
    assert run_jobs("jobs.coupons.send_coupon") == 1
    accounts = campaign_accounts(shop.merchant.id, marketing.campaign_id)
    assert accounts.reserved.balance.fen >= WORST_CASE

    # Push to those who paid ≥ ¥100 in 30 days: the consumer is in it, gets one more (once per consumer).
    pushed = owner.post(f"/console/m/{slug}/coupons/{stock.id}/push", {"min_paid": "100", "days": "30"})
    assert pushed.status_code == 303
    page = owner.get(f"/console/m/{slug}/coupons/{stock.id}").text
    assert 'data-test="push-result"' in page
    assert re.search(r'data-figure="push_segment">1<', page) and re.search(
        r'data-figure="push_issued">1<', page
    )
    assert db_session.scalar(select(func.count(Coupon.id))) == 2
    owner.post(f"/console/m/{slug}/coupons/{stock.id}/push", {"min_paid": "100", "days": "30"})
    assert db_session.scalar(select(func.count(Coupon.id))) == 2

    # The page's figures are the metrics service's; the coupons are listed and found.
    figures = next(
        row for row in metrics.stock_metrics(merchant_id=shop.merchant.id) if row["stock_id"] == stock.id
    )
    assert re.search(rf'data-figure="issued">{figures["issued"]}<', page) and figures["issued"] == 2
    assert len(re.findall(r"data-coupon=", page)) == 2
    found = owner.get(f"/console/m/{slug}/coupons/{stock.id}?status=sent").text
    assert len(re.findall(r"data-coupon=", found)) == 1
    # The API finds and pages them the same way.
    api = f"/api/console/v1/coupon-stocks/{stock.id}/coupons"
    listed = marketing.console.get(api).json
    assert len(listed) == 2 and listed[0]["id"] > listed[1]["id"]
    assert [c["status"] for c in marketing.console.get(f"{api}?status=sent").json] == ["sent"]
    first = marketing.console.get(f"{api}?limit=1").json
    older = marketing.console.get(f"{api}?limit=1&before={first[0]['id']}").json
    assert [c["id"] for c in first + older] == [c["id"] for c in listed]
    wechat_id = next(c["wechat_coupon_id"] for c in listed if c["wechat_coupon_id"])
    assert [c["wechat_coupon_id"] for c in marketing.console.get(f"{api}?q={wechat_id}").json] == [wechat_id]
    assert marketing.console.get(f"{api}?status=nope").status_code == 422
    assert marketing.console.get(f"{api}?limit=0").status_code == 422

    # The metrics widget (the stocks, then one aggregate per stock and channel) is two round trips.
    merchant_id = shop.merchant.id
    metrics.stock_metrics(merchant_id=merchant_id)  # warm: the savepoint and loads of the test's session
    with statements() as seen:
        again = metrics.stock_metrics(merchant_id=merchant_id)
    assert len(seen) <= 2, seen
    assert again[0]["issued"] == 2 and again[0]["channels"][0]["channel"] in ("direct", "push")

    # Pause, then restart: at WeChat and here.
    assert owner.post(f"/console/m/{slug}/coupons/{stock.id}/status", {"status": "paused"}).status_code == 303
    db_session.refresh(stock)
    assert stock.status.value == "paused"
    issue_paused = owner.post(
        f"/console/m/{slug}/coupons/{stock.id}/issue",
        {"consumer_id": str(shop.consumer_id), "idempotency_key": "another-key"},
    )
    assert issue_paused.status_code == 303  # refused: back with the reason
    assert "error" in _flash(owner.get(f"/console/m/{slug}/coupons/{stock.id}").text)
    assert db_session.scalar(select(func.count(Coupon.id))) == 2
    assert (
        owner.post(f"/console/m/{slug}/coupons/{stock.id}/status", {"status": "running"}).status_code == 303
    )
    db_session.refresh(stock)
    assert stock.status.value == "running"
    # WeChat's size, smaller than ours: the difference is highlighted.
    assert (
        owner.post(
            f"/console/m/{slug}/coupons/{stock.id}/wechat-size", {"wechat_max_coupons": "3"}
        ).status_code
        == 303
    )
    listed = owner.get(f"/console/m/{slug}/coupons").text
    assert 'data-test="limit-difference"' in listed and 'class="difference"' in listed
    ledger_clean()


def test_merchant_coupons_are_offered_only_while_wechat_allows_them(
    marketing: Marketing, db_session: Session
) -> None:
    shop = marketing.shop
    slug = shop.merchant.slug
    owner = _browser(marketing, Role.OWNER)
    page = owner.get(f"/console/m/{slug}/coupons").text
    assert 'value="merchant_coupon"' in page  # never asked yet: offered

    # WeChat answers NO_AUTH (the sandbox's default): refused, with WeChat's reason, nothing half-done.
    refused = owner.post(
        f"/console/m/{slug}/coupons", _create_form(marketing, kind="merchant_coupon", name="商家券")
    )
    assert refused.status_code == 303
    page = owner.get(f"/console/m/{slug}/coupons").text
    assert "error" in _flash(page) and "2025-12-15" in page
    assert 'data-test="capability-off"' in page and 'data-test="merchant-coupons-off"' in page
    assert 'value="merchant_coupon"' not in page  # no half-form for them: vouchers only
    assert 'value="voucher"' in page
    assert campaign_accounts(shop.merchant.id, marketing.campaign_id).reserved.balance.fen == 0

    # The merchant opens merchant coupons at WeChat Pay later: an operator has WeChat asked again. A viewer
    # sees WeChat's answer, not the button.
    viewer = _browser(marketing, Role.VIEWER)
    assert 'data-test="capability-off"' in (seen := viewer.get(f"/console/m/{slug}/coupons").text)
    assert 'data-test="ask-again-merchant_coupon"' not in seen
    assert 'data-test="ask-again-merchant_coupon"' in page
    action = f"/console/m/{slug}/coupons/capabilities/merchant_coupon/ask-again"
    assert viewer.post(action, {}).status_code == 403
    assert _said(owner, owner.post(action, {})) == ["下次调用时将重新询问微信支付是否已开通"]
    page = owner.get(f"/console/m/{slug}/coupons").text
    assert 'data-test="capability-off"' not in page and 'value="merchant_coupon"' in page
    shop.sandbox.post(f"/merchants/{shop.merchant.mchid}/busifavor", {"enabled": True})
    made = owner.post(
        f"/console/m/{slug}/coupons", _create_form(marketing, kind="merchant_coupon", name="商家券")
    )
    assert made.status_code == 303 and "ok" in _flash(owner.get(made.headers["Location"]).text)


def test_a_merchant_coupon_is_revoked_from_its_stocks_page(marketing: Marketing, db_session: Session) -> None:
    shop = marketing.shop
    slug = shop.merchant.slug
    shop.sandbox.post(f"/merchants/{shop.merchant.mchid}/busifavor", {"enabled": True})
    stock = marketing.stock(kind="merchant_coupon", channels=["plugin"])
    offered = shop.client.post(
        "/api/mp/v1/coupons/plugin", json={"stock_id": stock["id"]}, headers=shop.consumer_headers
    ).json
    shop.sandbox.post(
        "/users/alice/send-coupon",
        {
            "appid": shop.merchant.mp_appid,
            **{k: offered[k] for k in ("send_coupon_params", "send_coupon_merchant", "sign")},
        },
    )
    owner = _browser(marketing, Role.OWNER)
    page = owner.get(f"/console/m/{slug}/coupons/{stock['id']}").text
    assert 'data-test="revoke"' in page
    revoked = owner.post(
        f"/console/m/{slug}/coupons/{stock['id']}/coupons/{offered['coupon_id']}/revoke", {"reason": "abuse"}
    )
    assert revoked.status_code == 303
    coupon = db_session.get(Coupon, offered["coupon_id"])
    db_session.refresh(coupon)
    assert coupon is not None and coupon.status is CouponStatus.DEACTIVATED
    assert campaign_accounts(shop.merchant.id, marketing.campaign_id).reserved.balance.fen == 0
    assert run_jobs("jobs.coupons.deactivate_merchant_coupon") == 1
    ledger_clean()


def test_a_viewer_reads_the_coupons_and_is_refused_every_change(
    marketing: Marketing, db_session: Session
) -> None:
    shop = marketing.shop
    slug = shop.merchant.slug
    stock = marketing.stock()
    viewer = _browser(marketing, Role.VIEWER)
    listed = viewer.get(f"/console/m/{slug}/coupons")
    detail = viewer.get(f"/console/m/{slug}/coupons/{stock['id']}")
    assert listed.status_code == detail.status_code == 200
    for html in (listed.text, detail.text):
        assert 'data-test="read-only"' in html
        assert 'data-test="stock-form"' not in html and 'data-test="issue-form"' not in html
        assert 'data-test="push-form"' not in html
    sid = stock["id"]
    for path, data in (
        (f"/console/m/{slug}/coupons", _create_form(marketing)),
        (f"/console/m/{slug}/coupons/{sid}/status", {"status": "paused"}),
        (f"/console/m/{slug}/coupons/{sid}/submit", {}),
        (f"/console/m/{slug}/coupons/{sid}/wechat-size", {"wechat_max_coupons": "1"}),
        (
            f"/console/m/{slug}/coupons/{sid}/issue",
            {"consumer_id": str(shop.consumer_id), "idempotency_key": "v"},
        ),
        (f"/console/m/{slug}/coupons/{sid}/push", {"min_paid": "0", "days": "30"}),
        (f"/console/m/{slug}/coupons/{sid}/coupons/1/revoke", {"reason": "x"}),
    ):
        assert viewer.post(path, data).status_code == 403, path
    assert db_session.scalar(select(func.count(CouponStock.id))) == 1
    assert db_session.scalar(select(func.count(Coupon.id))) == 0
    assert db_session.get(CouponStock, sid).status.value == "running"  # type: ignore[union-attr]


def test_a_task_stock_is_created_from_the_form_with_its_task(
    marketing: Marketing, db_session: Session
) -> None:
    slug = marketing.shop.merchant.slug
    operator = _browser(marketing, Role.OPERATOR)
    page = operator.get(f"/console/m/{slug}/coupons").text
    assert 'data-test="channel-first_visit"' in page and 'data-test="task-kind"' in page
    plain = {"rule_id": "", "face_value": "5", "min_spend": "30"}

    missing = operator.post(
        f"/console/m/{slug}/coupons", _create_form(marketing, **plain, channels="task", task_count="")
    )
    assert db_session.scalars(select(CouponStock)).all() == [], _said(operator, missing)
    created = operator.post(
        f"/console/m/{slug}/coupons",
        _create_form(marketing, **plain, channels="task", task_kind="cart", task_count="2", task_days="3"),
    )
    assert created.status_code == 303, created.text[:2000]
    stock = db_session.scalars(select(CouponStock)).one()
    assert (stock.channels, stock.task) == (["task"], {"kind": "cart", "count": 2, "within_days": 3})
