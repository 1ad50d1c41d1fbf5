"""Finance's pages act as the API does: approve and reject withdrawals, retry a payout, and a resolution that
WeChat contradicts is refused with the reason on the page."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.auth.principals import Role
from app.core.money import Money
from app.extensions import db
from app.withdrawals.models import Withdrawal
from tests.console_ui.pages import Browser
from tests.factories import make_staff
from tests.payouts.conftest import Payee, payee, shop

__all__ = ["payee", "shop"]


def _finance(payee: Payee) -> Browser:
    merchant = payee.shop.merchant
    merchant.withdrawal_auto_approve_max = Money(0)
    make_staff("finance@pay.test", merchant=merchant, role=Role.FINANCE)
    db.session.commit()
    browser = Browser(payee.shop.client.application.test_client())
    assert browser.login("finance@pay.test").status_code == 303
    return browser


def test_finance_approves_rejects_retries_and_is_told_why_a_resolution_is_refused(
    payee: Payee, db_session: Session
) -> None:
    browser = _finance(payee)
    slug = payee.shop.merchant.slug
    first = payee.withdraw(100_00, "console-w1").json
    second = payee.withdraw(50_00, "console-w2").json
    assert first["status"] == second["status"] == "pending_review"
    listed = browser.get(f"/console/m/{slug}/withdrawals").text
    assert f'data-withdrawal="{first["id"]}"' in listed and f'data-withdrawal="{second["id"]}"' in listed

    assert (
        browser.post(
            f"/console/m/{slug}/withdrawals/{second['id']}/reject", {"reason": "not you"}
        ).status_code
        == 303
    )
    assert payee.withdrawal(second["id"])["status"] == "rejected"
    assert browser.post(f"/console/m/{slug}/withdrawals/{first['id']}/approve").status_code == 303
    withdrawal = db.session.get(Withdrawal, first["id"])
    assert withdrawal is not None and withdrawal.payout_id is not None
    payout = payee.payout_of(first["id"])
    assert payee.run(payout) == "accepted"  # a transfer bill waiting for the buyer's confirmation

    assert browser.post(f"/console/m/{slug}/payouts/{payout.id}/retry").status_code == 303
    assert 'data-flash="ok"' in browser.get(f"/console/m/{slug}/payouts").text
    refused = browser.post(
        f"/console/m/{slug}/payouts/{payout.id}/resolve", {"outcome": "succeeded", "reason": "checked"}
    )
    assert refused.status_code == 303  # WeChat says the bill is still waiting: 409, back with the reason
    page = browser.get(f"/console/m/{slug}/payouts?status=accepted").text
    assert 'data-flash="error"' in page and f'data-payout="{payout.id}"' in page
    db.session.refresh(payout)
    assert payout.status.value == "accepted"
