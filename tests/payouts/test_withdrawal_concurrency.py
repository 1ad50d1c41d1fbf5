"""20 withdrawal requests racing for one balance, each on its own connection with real commits."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from app.consumers.models import AppKind, Consumer, WeChatIdentity
from app.consumers.sessions import issue_session
from app.extensions import db
from app.ledger.accounts import consumer_accounts
from app.merchants.models import Merchant
from app.payouts.models import Payout
from app.withdrawals.models import Withdrawal
from tests.payments.conftest import Committed
from tests.payouts.conftest import fund_available, ledger_clean


def test_twenty_concurrent_withdrawals_never_overdraw(committed: Committed) -> None:
    with committed.app.app_context():
        consumer = db.session.get(Consumer, committed.consumer_id)
        merchant = db.session.get(Merchant, committed.merchant_id)
        assert consumer is not None and merchant is not None
        db.session.add(
            WeChatIdentity(
                merchant_id=merchant.id,
                consumer_id=consumer.id,
                app_kind=AppKind.MINIPROGRAM,
                appid=merchant.mp_appid or "",
                openid="o-racer",
            )
        )
        merchant.withdrawal_daily_limit = merchant.withdrawal_daily_limit * 10
        fund_available(merchant.id, consumer.id, 5000, "race-fund")  # room for exactly 5 of ¥10
        token, _ = issue_session(consumer)
        appid = merchant.mp_appid or ""
        db.session.commit()

    headers = {"Authorization": f"Bearer {token}", "X-WX-AppId": appid}
    barrier = threading.Barrier(20)

    def withdraw(i: int) -> int:
        client = committed.client()
        barrier.wait(timeout=30)
        # Two requests per key: retries of one request must not move money twice.
        body = {"amount_fen": 1000, "idempotency_key": f"race-{i // 2}"}
        return client.post("/api/mp/v1/withdrawals", json=body, headers=headers).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(withdraw, range(20)))

    assert set(statuses) <= {201, 409}
    with committed.app.app_context():
        wallet = consumer_accounts(committed.merchant_id, committed.consumer_id)
        withdrawals = db.session.scalar(select(func.count(Withdrawal.id)))
        payouts = db.session.scalar(select(func.count(Payout.id)))
        assert (wallet.available.balance.fen, wallet.withdrawing.balance.fen) == (0, 5000)
        assert withdrawals == payouts == 5
        assert statuses.count(201) >= 5
        ledger_clean()
