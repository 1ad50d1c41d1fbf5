"""Outside production the pay answer says how to pay in the WeChat sandbox; in production it never does."""

from __future__ import annotations

import json
import shlex

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.extensions import db
from app.merchants.models import Merchant
from app.orders.models import Order
from app.payments.models import PaymentAttempt
from app.payments.schemas import PaymentSchema
from app.payments.service import PaymentRequest, _sandbox_payment
from app.settings import Env, Settings
from tests.conftest import AppFactory
from tests.payments.conftest import Shop


def test_the_pay_answer_carries_the_sandbox_call_that_pays_it(shop: Shop) -> None:
    order = shop.register("SO-HINT-1", 20000)
    answer = shop.pay_params(order["id"])
    assert answer.status_code == 200, answer.json
    hint = answer.json["sandbox"]
    out_trade_no = shop.out_trade_no(order["id"])
    assert hint["out_trade_no"] == out_trade_no
    assert hint["mchid"] == shop.merchant.mchid
    assert hint["method"] == "POST" and hint["url"].endswith(f"/_sandbox/transactions/{out_trade_no}/pay")
    assert hint["body"] == {"mchid": shop.merchant.mchid}
    # The ready-to-paste curl is the same call.
    words = shlex.split(hint["curl"])
    assert words[words.index("-X") + 1] == "POST" and hint["url"] in words
    assert words[words.index("-d") + 1] == json.dumps({"mchid": shop.merchant.mchid})
    # Doing what it says pays the order (the sandbox notifies Hongli, which applies it).
    paid = requests.post(hint["url"], json=hint["body"], timeout=10)
    assert paid.status_code == 200 and paid.json()["trade_state"] == "SUCCESS"
    assert shop.order("SO-HINT-1")["status"] == "paid"


def test_production_never_shows_it(
    shop: Shop, db_session: Session, app_factory: AppFactory, settings: Settings
) -> None:
    order_row = shop.register("SO-HINT-2", 5000)
    assert shop.pay_params(order_row["id"]).status_code == 200
    order = db.session.get(Order, order_row["id"])
    attempt = db.session.scalars(
        select(PaymentAttempt).where(PaymentAttempt.order_id == order_row["id"])
    ).one()
    merchant = db.session.get(Merchant, shop.merchant.id)
    assert order is not None and merchant is not None
    production = app_factory(settings.model_copy(update={"env": Env.PRODUCTION}))
    with production.app_context():
        hint = _sandbox_payment(merchant, attempt)
        dumped = PaymentSchema().dump(PaymentRequest(order, attempt, hint))
    assert hint is None
    assert "sandbox" not in dumped and dumped["payable_fen"] == 5000
