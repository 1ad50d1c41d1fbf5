"""What the people pages do for the roles allowed to act: switch merchants, ban, give roles, issue keys."""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from app.auth.principals import Role
from app.consumers.models import Consumer
from app.extensions import db
from app.shop_keys.models import ShopApiKey
from tests.console_ui.pages import Browser
from tests.factories import make_consumer, make_merchant, make_staff
from tests.payments.conftest import Shop, shop

__all__ = ["shop"]


def test_staff_of_several_merchants_choose_one(client: FlaskClient, db_session: Session) -> None:
    one, two = make_merchant("tea-one"), make_merchant("tea-two")
    make_merchant("tea-three")
    account = make_staff("both@tea.test", merchant=one, role=Role.VIEWER)
    make_staff("root@tea.test", is_platform_admin=True)
    from app.staff.models import StaffMembership

    db.session.add(StaffMembership(staff_id=account.id, merchant_id=two.id, role=Role.FINANCE))
    db.session.flush()
    browser = Browser(client)
    assert browser.login("both@tea.test").status_code == 303
    listed = browser.get("/console/")
    assert listed.status_code == 200
    assert re.findall(r'data-merchant="([^"]+)"', listed.text) == ["tea-one", "tea-two"]
    assert browser.get("/console/m/tea-two/withdrawals").status_code == 200  # finance there
    assert browser.get("/console/m/tea-one/withdrawals").status_code == 403  # a viewer here
    assert browser.get("/console/m/tea-three/").status_code == 403
    root = Browser(client.application.test_client())
    assert root.login("root@tea.test").status_code == 303
    slugs = re.findall(r'data-merchant="([^"]+)"', root.get("/console/").text)
    assert {"tea-one", "tea-two", "tea-three"} <= set(slugs)


def test_a_reviewer_bans_and_lifts_a_ban(client: FlaskClient, db_session: Session) -> None:
    merchant = make_merchant("ban-tea")
    make_staff("reviewer@ban-tea.test", merchant=merchant, role=Role.REVIEWER)
    consumer = make_consumer(merchant)
    browser = Browser(client)
    assert browser.login("reviewer@ban-tea.test").status_code == 303
    path = f"/console/m/ban-tea/consumers/{consumer.id}"
    assert browser.post(f"{path}/ban", {"reason": "fake orders"}).status_code == 303
    db.session.expire_all()
    assert db.session.get(Consumer, consumer.id).status.value == "banned"  # type: ignore[union-attr]
    assert 'data-test="consumer-status">已封禁' in browser.get(path).text
    assert browser.post(f"{path}/unban").status_code == 303
    db.session.expire_all()
    assert db.session.get(Consumer, consumer.id).status.value == "active"  # type: ignore[union-attr]


def test_the_owner_gives_roles_and_a_shop_key_shown_once(client: FlaskClient, db_session: Session) -> None:
    merchant = make_merchant("key-tea")
    make_staff("owner@key-tea.test", merchant=merchant, role=Role.OWNER)
    newcomer = make_staff("new@key-tea.test")
    browser = Browser(client)
    assert browser.login("owner@key-tea.test").status_code == 303
    assert (
        browser.post("/console/m/key-tea/staff", {"email": "new@key-tea.test", "role": "finance"}).status_code
        == 303
    )
    assert "new@key-tea.test" in browser.get("/console/m/key-tea/staff").text
    again = browser.post("/console/m/key-tea/staff", {"email": "new@key-tea.test", "role": "finance"})
    assert again.status_code == 303  # 409 → back to the page, saying why
    assert "flash error" in browser.get("/console/m/key-tea/staff").text
    assert browser.post(f"/console/m/key-tea/staff/{newcomer.id}", {"remove": "1"}).status_code == 303
    created = browser.post("/console/m/key-tea/shop-keys", {"name": "shop"})
    assert created.status_code == 200
    key = re.search(r'data-test="key">(hk_[A-Za-z0-9_-]+)<', created.text)
    assert key, created.text[:2000]
    listing = browser.get("/console/m/key-tea/shop-keys").text
    assert key.group(1) not in listing  # shown once
    (row,) = db.session.query(ShopApiKey).filter_by(merchant_id=merchant.id).all()
    assert row.display_prefix in listing and key.group(1).startswith(row.display_prefix)
    assert "Set-Cookie" not in created.headers or key.group(1) not in created.headers["Set-Cookie"]


def test_an_operator_makes_a_qr_code_and_prints_its_png(
    shop: Shop, client: FlaskClient, db_session: Session
) -> None:
    make_staff("operator@qr.test", merchant=shop.merchant, role=Role.OPERATOR)
    browser = Browser(shop.client.application.test_client())
    assert browser.login("operator@qr.test").status_code == 303
    base = f"/console/m/{shop.merchant.slug}/followers"
    made = browser.post(f"{base}/qr-codes", {"purpose": "channel", "channel": "poster"})
    assert made.status_code == 303
    page = browser.get(base).text
    (png_path,) = re.findall(r'<img src="([^"]+\.png)"', page)
    image = browser.get(png_path)
    assert (
        image.status_code == 200 and image.mimetype == "image/png" and image.data[:8] == b"\x89PNG\r\n\x1a\n"
    )
    assert browser.post(f"{base}/replies", {"trigger": "subscribe", "content": "欢迎 <b>"}).status_code == 303
    assert "欢迎 &lt;b&gt;" in browser.get(base).text
