"""A follower's pages: signed in through the official account's web OAuth (sandbox), the wallet and red
packets as the ledger says, escaped, under a strict CSP; the JS-SDK signature by WeChat's algorithm."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from app.consumers.models import Consumer
from app.core.db import utcnow
from app.core.money import Money
from app.h5.service import js_config
from app.ledger.accounts import consumer_accounts, platform_account
from app.ledger.models import AccountKind, EntryReason
from app.ledger.service import post_entry
from app.merchants.models import Merchant
from tests.sandbox import Sandbox
from wechat.crypto import jsapi_config_signature


def _sign_in(client: FlaskClient, sandbox: Sandbox, merchant: Merchant, user_id: str) -> str:
    """Open the wallet as a stranger, go through WeChat's authorize page, land signed in; the token."""
    page = client.get(f"/h5/m/{merchant.slug}/")
    assert page.status_code == 302
    start = client.get(page.headers["Location"])
    authorize = urlsplit(start.headers["Location"])
    back = sandbox.admin.get(authorize.path, query_string=f"{authorize.query}&sandbox_user={user_id}")
    callback = urlsplit(back.headers["Location"])
    landing = urlsplit(client.get(callback.path, query_string=callback.query).headers["Location"])
    assert landing.path == f"/h5/m/{merchant.slug}/signed-in"
    token = parse_qs(landing.fragment)["token"][0]
    signed_in = client.get(landing.path)
    assert signed_in.status_code == 200 and b"signed-in.js" in signed_in.data
    stored = client.post(f"/h5/m/{merchant.slug}/session", json={"token": token})
    assert stored.status_code == 204
    assert "HttpOnly" in stored.headers["Set-Cookie"]
    return token


def test_a_follower_signs_in_and_sees_the_wallet_the_ledger_holds(
    client: FlaskClient, sandbox: Sandbox, db_session: Session
) -> None:
    merchant = sandbox.onboard("acme-tea")
    merchant.name = "<script>alert(1)</script> 茶"
    sandbox.user(id="hana", nickname="Hana")
    _sign_in(client, sandbox, merchant, "hana")
    consumer = db_session.query(Consumer).filter_by(merchant_id=merchant.id).one()
    wallet = consumer_accounts(merchant.id, consumer.id)
    source = platform_account(AccountKind.PLATFORM_FUNDING_SOURCE)
    for key, account, fen in (("w1", wallet.available, 1234), ("w2", wallet.pending, 500)):
        post_entry(
            key=key,
            reason=EntryReason.REBATE_PENDING,
            cause_type="test",
            cause_id=key,
            lines=[(source, Money(-fen)), (account, Money(fen))],
            merchant_id=merchant.id,
            memo="seeded",
        )
    db_session.flush()

    page = client.get(f"/h5/m/{merchant.slug}/")

    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<strong id="available">¥12.34</strong>' in html
    assert '<span id="pending">¥5.00</span>' in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; 茶" in html
    assert 'lang="zh-CN"' in html and "我的钱包" in html
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self' https://res.wx.qq.com" in csp and "'unsafe-inline'" not in csp
    assert page.headers["Cache-Control"] == "no-store"


def test_a_stranger_or_a_forged_cookie_is_sent_to_sign_in(
    client: FlaskClient, sandbox: Sandbox, db_session: Session
) -> None:
    merchant = sandbox.onboard("acme-tea")
    client.set_cookie("hl_h5", "forged-token", path=f"/h5/m/{merchant.slug}/")
    page = client.get(f"/h5/m/{merchant.slug}/")
    assert page.status_code == 302
    assert urlsplit(page.headers["Location"]).path == "/h5/v1/oauth/start"
    assert client.post(f"/h5/m/{merchant.slug}/session", json={"token": "forged"}).status_code == 401
    assert client.post(f"/h5/m/{merchant.slug}/session", data="x").status_code == 400
    assert client.get("/h5/m/no-such-shop/").status_code == 404


def test_js_sdk_config_is_signed_with_the_cached_jsapi_ticket(
    client: FlaskClient, sandbox: Sandbox, db_session: Session
) -> None:
    merchant = sandbox.onboard("acme-tea")
    first = js_config(merchant, "https://h5.acme-tea.example/h5/m/acme-tea/?a=1#frag")
    second = js_config(merchant, "https://h5.acme-tea.example/h5/m/acme-tea/?a=1")
    [ticket] = [
        t for (appid, kind), (t, _) in sandbox.world.state.tickets.items() if appid == merchant.oa_appid
    ]
    for config in (first, second):
        assert config.app_id == merchant.oa_appid
        assert config.signature == jsapi_config_signature(
            jsapi_ticket=ticket,
            noncestr=config.nonce_str,
            timestamp=str(config.timestamp),
            url="https://h5.acme-tea.example/h5/m/acme-tea/?a=1",
        )
    assert abs(first.timestamp - int(utcnow().timestamp())) < int(timedelta(minutes=1).total_seconds())
