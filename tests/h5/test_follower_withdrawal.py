"""A follower withdraws on the official account's H5 pages: a transfer bill to their official-account
openid, confirmed through the JS-SDK (``wx.config`` signed with the sandbox's jsapi_ticket, then
``requestMerchantTransfer``) by the sandbox playing the WeChat client; the money lands exactly once."""

from __future__ import annotations

import json
import re
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from app.consumers.models import AppKind, Consumer, WeChatIdentity
from app.core.db import utcnow
from app.merchants.models import Merchant
from app.payouts.models import Payout, PayoutStatus
from app.wallet.service import wallet_of
from app.withdrawals.models import Withdrawal
from jobs.payouts import process_payout
from tests.h5.test_follower_pages import _sign_in
from tests.payouts.conftest import fund_available, ledger_clean
from tests.sandbox import Sandbox

HOST = "http://localhost"  # where the sign-in left the cookie


def _page(client: FlaskClient, path: str, **kwargs: Any) -> TestResponse:
    return client.get(path, base_url=HOST, **kwargs)


def _form(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]+)">', html))


def _follower(
    client: FlaskClient, sandbox: Sandbox, db_session: Session, fen: int
) -> tuple[Merchant, Consumer]:
    merchant = sandbox.onboard("acme-tea")
    sandbox.user(id="hana", nickname="Hana")
    _sign_in(client, sandbox, merchant, "hana")
    consumer = db_session.scalars(select(Consumer).where(Consumer.merchant_id == merchant.id)).one()
    apps = db_session.scalars(
        select(WeChatIdentity.app_kind).where(WeChatIdentity.consumer_id == consumer.id)
    )
    assert list(apps) == [AppKind.OFFICIAL_ACCOUNT]  # a follower only: no mini-program identity
    fund_available(merchant.id, consumer.id, fen, f"test-fund:{consumer.id}")
    db_session.commit()
    return merchant, consumer


def _withdraw(client: FlaskClient, merchant: Merchant, amount: str) -> TestResponse:
    form = _page(client, f"/h5/m/{merchant.slug}/withdraw")
    assert form.status_code == 200, form.data
    return client.post(
        f"/h5/m/{merchant.slug}/withdraw",
        data={**_form(form.get_data(as_text=True)), "amount": amount},
        base_url=HOST,
    )


def _run_payout(db_session: Session, withdrawal_id: int) -> Payout:
    withdrawal = db_session.get(Withdrawal, withdrawal_id)
    assert withdrawal is not None and withdrawal.payout_id is not None
    payout = db_session.get(Payout, withdrawal.payout_id)
    assert payout is not None
    payout.next_attempt_at = utcnow()
    db_session.commit()
    process_payout(payout.id)
    db_session.refresh(payout)
    return payout


def _transfer_block(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="transfer">(.*?)</script>', html, re.S)
    assert found is not None, html
    return json.loads(found.group(1))  # type: ignore[no-any-return]


def test_a_follower_withdraws_and_confirms_through_the_js_sdk(
    client: FlaskClient, sandbox: Sandbox, db_session: Session
) -> None:
    merchant, consumer = _follower(client, sandbox, db_session, 300_00)
    assert '<a id="withdraw"' in _page(client, f"/h5/m/{merchant.slug}/").get_data(as_text=True)

    asked = _withdraw(client, merchant, "12.50")

    assert asked.status_code == 303, asked.data
    withdrawal_id = int(asked.headers["Location"].rsplit("/", 1)[1])
    withdrawal = db_session.get(Withdrawal, withdrawal_id)
    assert withdrawal is not None and withdrawal.appid == merchant.oa_appid and withdrawal.amount.fen == 1250
    payout = _run_payout(db_session, withdrawal_id)
    # Paid to the follower's official-account openid: the app they asked from, the one they confirm in.
    hana = sandbox.get("/users/hana")
    assert (payout.appid, payout.openid) == (merchant.oa_appid, hana["openids"][merchant.oa_appid])
    assert payout.status is PayoutStatus.ACCEPTED and payout.wechat_state == "WAIT_USER_CONFIRM"

    page_url = f"{HOST}/h5/m/{merchant.slug}/withdrawals/{withdrawal_id}"
    page = _page(client, f"/h5/m/{merchant.slug}/withdrawals/{withdrawal_id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'data-status="awaiting_confirmation"' in html
    assert 'src="https://res.wx.qq.com/open/js/jweixin-1.6.0.js"' in html and "withdrawal.js" in html
    block = _transfer_block(html)
    assert block["transfer"] == {
        "mchId": merchant.mchid,
        "appId": merchant.oa_appid,
        "package": payout.package_info,
    }
    assert block["config"]["jsApiList"] == ["requestMerchantTransfer"]

    # The WeChat client: wx.config is checked against the ticket WeChat issued, then the user confirms.
    confirmed = sandbox.post(
        "/users/hana/request-merchant-transfer",
        {**block["transfer"], "page": {**block["config"], "url": page_url}},
    )
    assert confirmed["errMsg"] == "requestMerchantTransfer:ok" and confirmed["state"] == "SUCCESS"
    assert process_payout(payout.id) == "succeeded"

    shown = _page(client, f"/h5/m/{merchant.slug}/withdrawals/{withdrawal_id}").get_data(as_text=True)
    assert 'data-status="paid"' in shown and 'id="transfer"' not in shown
    balances = wallet_of(merchant_id=merchant.id, consumer_id=consumer.id)
    assert (balances.available.fen, balances.withdrawing.fen) == (300_00 - 1250, 0)
    paid = [p for p in sandbox.get(f"/payouts?mchid={merchant.mchid}")["payouts"] if p["paid"]]
    assert [(p["key"], p["amount_fen"]) for p in paid] == [(payout.bill_no, 1250)]
    listing = _page(client, f"/h5/m/{merchant.slug}/withdraw").get_data(as_text=True)
    assert "已到账" in listing and "¥12.50" in listing
    ledger_clean()


def test_a_forged_config_another_user_or_a_wrong_package_confirm_nothing(
    client: FlaskClient, sandbox: Sandbox, db_session: Session
) -> None:
    merchant, _consumer = _follower(client, sandbox, db_session, 100_00)
    withdrawal_id = int(_withdraw(client, merchant, "10").headers["Location"].rsplit("/", 1)[1])
    payout = _run_payout(db_session, withdrawal_id)
    page_url = f"{HOST}/h5/m/{merchant.slug}/withdrawals/{withdrawal_id}"
    block = _transfer_block(
        _page(client, f"/h5/m/{merchant.slug}/withdrawals/{withdrawal_id}").get_data(as_text=True)
    )
    sandbox.user(id="mallory", nickname="Mallory")
    page = {**block["config"], "url": page_url}

    def attempt(user: str, body: dict[str, Any]) -> tuple[int, Any]:
        response = sandbox.admin.post(f"/_sandbox/users/{user}/request-merchant-transfer", json=body)
        return response.status_code, response.get_json()

    forged = attempt("hana", {**block["transfer"], "page": {**page, "signature": "0" * 40}})
    other_url = attempt("hana", {**block["transfer"], "page": {**page, "url": f"{HOST}/elsewhere"}})
    no_config = attempt("hana", dict(block["transfer"]))
    no_permission = attempt("hana", {**block["transfer"], "page": {**page, "jsApiList": []}})
    wrong_package = attempt("hana", {**block["transfer"], "package": "ABBQO+forged==", "page": page})
    wrong_user = attempt("mallory", {**block["transfer"], "page": page})

    assert [
        status for status, _ in (forged, other_url, no_config, no_permission, wrong_package, wrong_user)
    ] == [
        403,
        403,
        403,
        403,
        400,
        403,
    ]
    assert forged[1]["error"]["message"] == "config:invalid signature"
    db_session.refresh(payout)
    assert payout.status is PayoutStatus.ACCEPTED
    [bill] = [
        p for p in sandbox.get(f"/payouts?mchid={merchant.mchid}")["payouts"] if p["key"] == payout.bill_no
    ]
    assert not bill["paid"]
    ledger_clean()


def test_bad_withdrawal_forms_change_nothing(
    client: FlaskClient, sandbox: Sandbox, db_session: Session
) -> None:
    merchant, consumer = _follower(client, sandbox, db_session, 20_00)
    form = _form(_page(client, f"/h5/m/{merchant.slug}/withdraw").get_data(as_text=True))
    path = f"/h5/m/{merchant.slug}/withdraw"

    no_csrf = client.post(path, data={**form, "csrf": "x" * 64, "amount": "5"}, base_url=HOST)
    not_money = client.post(path, data={**form, "amount": "5.001"}, base_url=HOST)
    too_much = client.post(path, data={**form, "amount": "20.01"}, base_url=HOST)
    bad_key = client.post(path, data={**form, "idempotency_key": "<x>", "amount": "5"}, base_url=HOST)
    stranger = FlaskClient(client.application, use_cookies=True).post(
        path, data={**form, "amount": "5"}, base_url=HOST
    )

    assert no_csrf.status_code == 403
    assert not_money.status_code == 422 and "请输入金额" in not_money.get_data(as_text=True)
    assert too_much.status_code == 409 and "可提现余额不足" in too_much.get_data(as_text=True)
    assert bad_key.status_code == 422
    assert stranger.status_code == 302  # sent to sign in
    assert db_session.scalars(select(Withdrawal).where(Withdrawal.consumer_id == consumer.id)).all() == []
    balances = wallet_of(merchant_id=merchant.id, consumer_id=consumer.id)
    assert (balances.available.fen, balances.withdrawing.fen) == (20_00, 0)

    # The same form twice (a double tap) asks once.
    first = client.post(path, data={**form, "amount": "5"}, base_url=HOST)
    again = client.post(path, data={**form, "amount": "5"}, base_url=HOST)
    assert first.status_code == again.status_code == 303
    assert first.headers["Location"] == again.headers["Location"]
    assert wallet_of(merchant_id=merchant.id, consumer_id=consumer.id).withdrawing.fen == 500
    ledger_clean()


def test_a_buyer_with_both_identities_is_paid_where_they_asked(
    client: FlaskClient, sandbox: Sandbox, db_session: Session
) -> None:
    merchant, consumer = _follower(client, sandbox, db_session, 100_00)
    sandbox.login_code("hana", merchant.mp_appid or "")  # she opens the mini-program too
    mp_openid = sandbox.get("/users/hana")["openids"][merchant.mp_appid]
    db_session.add(
        WeChatIdentity(
            merchant_id=merchant.id,
            consumer_id=consumer.id,
            app_kind=AppKind.MINIPROGRAM,
            appid=merchant.mp_appid or "",
            openid=mp_openid,
        )
    )
    db_session.commit()
    on_h5 = int(_withdraw(client, merchant, "5").headers["Location"].rsplit("/", 1)[1])
    assert _run_payout(db_session, on_h5).appid == merchant.oa_appid

    from app.payouts.service import recipient

    assert recipient(merchant, consumer.id, merchant.mp_appid)[0] == merchant.mp_appid
    assert recipient(merchant, consumer.id, None)[0] == merchant.mp_appid
    assert recipient(merchant, consumer.id, "wx-not-this-merchants")[0] == merchant.mp_appid
