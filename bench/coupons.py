"""The coupon bench case: a ``COUPON.USE`` notification for a voucher spent on a paid order, as WeChat Pay
would POST it to ``/wechat/<merchant>/coupons/notify``: verify, decrypt, mark the coupon used, find its
paid order, book its cost and the two-way legs from its reservation (one ledger batch), commit.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import timedelta

from sqlalchemy import select

from bench.harness import Case, Request, RequestSource, Server
from bench.seed import (
    PUBLIC_KEY_ID,
    PayMerchant,
    post_each,
    seed_campaign,
    seed_pay_merchant,
    transaction_success,
)

ORDER_TOTAL_FEN = 100_00
TWO_WAY = {
    "rules": [
        {
            "id": "two-way",
            "kind": "two_way",
            "priority": 10,
            "stacking": "combinable",
            "trigger_min_order_fen": 200_00,
            "packet_value_fen": 10_00,
            "packet_min_spend_fen": 50_00,
            "packet_valid_days": 30,
            "issuer_rate_bp": 1000,
            "buyer_rate_bp": 500,
            "max_order_fen": 1000_00,
        }
    ]
}
WORST_CASE_FEN = 10_00 + 100_00 + 50_00


def coupon_use(merchant: PayMerchant, *, coupon_id: str, stock_id: str, transaction_id: str) -> Request:
    """A signed, encrypted ``COUPON.USE`` (§7a.5) for one voucher spent with ``transaction_id``."""
    from wechat.crypto import AUTH_SCHEMA, aead_encrypt, generate_nonce, rsa_sha256_sign, v3_response_message

    resource = {
        "stock_creator_mchid": merchant.mchid,
        "stock_id": stock_id,
        "coupon_id": coupon_id,
        "coupon_name": "满50减10",
        "status": "USED",
        "coupon_type": "NORMAL",
        "no_cash": False,
        "normal_coupon_information": {"coupon_amount": 10_00, "transaction_minimum": 50_00},
        "consume_information": {
            "consume_time": "2026-01-01T12:00:00+08:00",
            "consume_mchid": merchant.mchid,
            "transaction_id": transaction_id,
        },
    }
    aead_nonce = generate_nonce(12)
    envelope = {
        "id": f"EV-COUPON-{coupon_id}",
        "create_time": "2026-01-01T12:00:01+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "COUPON.USE",
        "summary": "用券成功",
        "resource": {
            "original_type": "coupon",
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": aead_encrypt(merchant.apiv3_key, aead_nonce, json.dumps(resource).encode(), ""),
            "associated_data": "",
            "nonce": aead_nonce,
        },
    }
    body = json.dumps(envelope, ensure_ascii=False).encode()
    ts = str(int(time.time()))
    nonce = generate_nonce(32)
    headers = {
        "Content-Type": "application/json",
        "Wechatpay-Timestamp": ts,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Serial": PUBLIC_KEY_ID,
        "Wechatpay-Signature": rsa_sha256_sign(merchant.platform_key, v3_response_message(ts, nonce, body)),
        "Wechatpay-Signature-Type": AUTH_SCHEMA,
    }
    return Request("POST", f"/wechat/{merchant.slug}/coupons/notify", body, headers)


def _seed_vouchers(server: Server, merchant: PayMerchant, campaign_id: int) -> list[tuple[str, str, str]]:
    """A running voucher stock (as if WeChat had created it) and one sent voucher per paid order of the
    merchant: (coupon_id, stock_id, transaction_id) for each."""
    from app import create_app
    from app.campaigns.models import Campaign
    from app.core.db import utcnow
    from app.core.money import Money
    from app.coupons.issuance import reserve_coupon
    from app.coupons.models import Channel, CouponKind, CouponStatus, CouponStock, StockStatus
    from app.extensions import db
    from app.orders.models import Order, OrderStatus
    from app.settings import load_settings

    app = create_app(load_settings(environ=server.env))
    out: list[tuple[str, str, str]] = []
    with app.app_context():
        now = utcnow()
        orders = db.session.execute(
            select(Order.id, Order.consumer_id, Order.transaction_id).where(
                Order.merchant_id == merchant.merchant_id, Order.status == OrderStatus.PAID
            )
        ).all()
        stock = CouponStock(
            merchant_id=merchant.merchant_id,
            campaign_id=campaign_id,
            kind=CouponKind.VOUCHER,
            name="Bench ¥10",
            channels=["follow"],
            face_value=Money(10_00),
            min_spend=Money(50_00),
            valid_from=now - timedelta(minutes=1),
            valid_until=now + timedelta(days=30),
            max_coupons=len(orders),
            no_cash=False,
            wechat_stock_id=f"9{secrets.randbelow(10**8):08d}",
            out_request_no=f"{merchant.mchid}BENCH{secrets.token_hex(4)}",
            status=StockStatus.RUNNING,
            rule_version_id=db.session.get(Campaign, campaign_id).current_version_id,  # type: ignore[union-attr]
            rule_id="two-way",
            issuer_rate_bp=1000,
            buyer_rate_bp=500,
            max_order=Money(1000_00),
            worst_case_cost=Money(WORST_CASE_FEN),
        )
        db.session.add(stock)
        db.session.flush()
        for order_id, consumer_id, transaction_id in orders:
            coupon = reserve_coupon(
                stock, mchid=merchant.mchid, consumer_id=consumer_id, appid=merchant.appid,
                openid=merchant.openid, channel=Channel.FOLLOW, issue_key=f"bench:{order_id}", now=now,
            )  # fmt: skip
            coupon.status = CouponStatus.SENT
            coupon.wechat_coupon_id = f"{coupon.id:010d}"
            out.append((coupon.wechat_coupon_id, str(stock.wechat_stock_id), str(transaction_id)))
        db.session.commit()
        db.engine.dispose()
    return out


def _coupon_use(server: Server, total: int) -> RequestSource:
    # A distinct voucher per request, each spent on its own paid order: the whole booking path every time.
    merchant = seed_pay_merchant(
        server, slug="bench-coupon-use", orders=total, total_fen=ORDER_TOTAL_FEN, buyers=total
    )
    campaign_id = seed_campaign(
        server, merchant_id=merchant.merchant_id, rules=TWO_WAY, budget_fen=2 * WORST_CASE_FEN * total
    )
    post_each(server, [transaction_success(merchant, attempt) for attempt in merchant.attempts])
    vouchers = _seed_vouchers(server, merchant, campaign_id)
    # Signed now: the run must end within WeChat's ±5 minute timestamp window.
    requests = [coupon_use(merchant, coupon_id=c, stock_id=s, transaction_id=t) for c, s, t in vouchers]
    return requests.__getitem__


COUPON_USE = Case(
    name="coupon-use",
    description="WeChat Pay COUPON.USE for a voucher spent on a paid order: verify, decrypt, mark used, find "
    "the order by its transaction, book the coupon's cost and the two-way legs from its reservation, commit",
    prepare=_coupon_use,
    goal_ratio=0.15,
    expect_status=(204,),
)
