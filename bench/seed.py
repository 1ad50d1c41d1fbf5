"""Seed the bench database in-process, and sign WeChat Pay notifications the way WeChat Pay would.

A seeded merchant is in WeChat Pay public-key mode: the bench holds the "platform" private key, so it
can sign v3 notifications (§3.3) that Hongli verifies with the public key it was onboarded with.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from bench.harness import Request, Server

PUBLIC_KEY_ID = "PUB_KEY_ID_0000000000000000000000000000000001"
ORDER_TOTAL_FEN = 12_80

# The seed's two-way rule (a ¥10 packet for orders from ¥200; its worst case, ¥160, is reserved) and a 2%
# buyer rebate: every paid order evaluates both, reserves a packet and books a pending rebate.
PAID_ORDER_TOTAL_FEN = 200_00
PAID_ORDER_RULES = {
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
        },
        {"id": "ratio", "kind": "ratio", "priority": 5, "stacking": "combinable", "rate_bp": 200},
    ]
}


@dataclass(frozen=True)
class Attempt:
    out_trade_no: str
    amount_fen: int


@dataclass(frozen=True)
class OfficialAccount:
    """What the bench needs to push official-account messages in safe mode, as WeChat would."""

    appid: str
    token: str
    encoding_aes_key: str
    original_id: str


@dataclass(frozen=True)
class PayMerchant:
    """What the bench needs to play WeChat Pay for one seeded merchant and its pending orders."""

    slug: str
    mchid: str
    appid: str
    apiv3_key: str
    openid: str
    platform_key: rsa.RSAPrivateKey
    attempts: tuple[Attempt, ...]
    merchant_id: int = 0
    consumer_id: int = 0
    oa: OfficialAccount | None = None


def _private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def _public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def seed_pay_merchant(
    server: Server, *, slug: str, orders: int, total_fen: int = ORDER_TOTAL_FEN, buyers: int = 1
) -> PayMerchant:
    """Onboard a merchant with ``buyers`` consumers and ``orders`` pending orders of ``total_fen`` (the
    buyers in turn), each with an active attempt."""
    from app import create_app
    from app.audit.service import CLI
    from app.consumers.models import AppKind, Consumer, WeChatIdentity
    from app.core.db import utcnow
    from app.core.money import Money
    from app.extensions import db
    from app.merchants.service import create_merchant
    from app.orders.models import Order, OrderStatus
    from app.payments.models import PaymentAttempt
    from app.settings import load_settings
    from wechat.crypto import generate_nonce

    merchant_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    platform_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    mchid = str(1_600_000_000 + secrets.randbelow(99_999_999))
    appid = f"wx{secrets.token_hex(8)}"
    apiv3_key = generate_nonce(32)
    openid = f"o{generate_nonce(27)}"
    oa = OfficialAccount(
        appid=f"wx{secrets.token_hex(8)}",
        token=generate_nonce(16),
        encoding_aes_key=generate_nonce(43),
        original_id=f"gh_{secrets.token_hex(6)}",
    )
    document: dict[str, Any] = {
        "slug": slug,
        "name": f"Bench {slug}",
        "miniprogram": {"appid": appid, "secret": secrets.token_hex(16)},
        "official_account": {
            "appid": oa.appid,
            "secret": secrets.token_hex(16),
            "token": oa.token,
            "encoding_aes_key": oa.encoding_aes_key,
        },
        "pay": {
            "mchid": mchid,
            "serial_no": secrets.token_hex(20).upper(),
            "private_key": _private_pem(merchant_key),
            "apiv3_key": apiv3_key,
            "wechatpay_public_key_id": PUBLIC_KEY_ID,
            "wechatpay_public_key": _public_pem(platform_key),
        },
    }
    app = create_app(load_settings(environ=server.env))
    with app.app_context():
        merchant = create_merchant(document=document, actor=CLI)
        consumers = [Consumer(merchant_id=merchant.id, nickname=f"bench {n}") for n in range(buyers)]
        db.session.add_all(consumers)
        db.session.flush()
        db.session.add_all(
            WeChatIdentity(
                merchant_id=merchant.id,
                consumer_id=consumer.id,
                app_kind=AppKind.MINIPROGRAM,
                appid=appid,
                openid=openid if n == 0 else f"{openid[:-6]}{n:06d}",
            )
            for n, consumer in enumerate(consumers)
        )
        consumer = consumers[0]
        item = {"sku": "TEA-1", "name": "Oolong tea", "category": "tea", "quantity": 1}
        db.session.add_all(
            Order(
                merchant_id=merchant.id,
                consumer_id=consumers[n % buyers].id,
                out_order_no=f"BENCH-{n}",
                request_digest=hashlib.sha256(f"{slug}:{n}".encode()).hexdigest(),
                status=OrderStatus.PENDING_PAYMENT,
                total=Money(total_fen),
                items=[item | {"unit_price_fen": total_fen}],
                description="Oolong tea",
            )
            for n in range(orders)
        )
        db.session.flush()
        order_ids = db.session.scalars(
            select(Order.id).where(Order.merchant_id == merchant.id).order_by(Order.id)
        ).all()
        expires_at = utcnow() + timedelta(hours=2)
        attempts = tuple(Attempt(f"HL{order_id:08d}P1", total_fen) for order_id in order_ids)
        db.session.add_all(
            PaymentAttempt(
                merchant_id=merchant.id,
                order_id=order_id,
                out_trade_no=attempt.out_trade_no,
                appid=appid,
                payer_openid=openid,
                amount=Money(attempt.amount_fen),
                expires_at=expires_at,
            )
            for order_id, attempt in zip(order_ids, attempts, strict=True)
        )
        db.session.commit()
        merchant_id, consumer_id = merchant.id, consumer.id
        db.engine.dispose()
    return PayMerchant(
        slug, mchid, appid, apiv3_key, openid, platform_key, attempts, merchant_id, consumer_id, oa
    )


def _app(server: Server) -> Any:
    from app import create_app
    from app.settings import load_settings

    return create_app(load_settings(environ=server.env))


def seed_campaign(server: Server, *, merchant_id: int, rules: dict[str, Any], budget_fen: int) -> int:
    """An active campaign of ``rules`` funded with ``budget_fen``: a deposit into the merchant's budget
    (as ``budgets deposit`` records it), then the campaign funded from it. Returns its id."""
    from app.audit.service import CLI
    from app.campaigns.models import CampaignStatus
    from app.campaigns.service import create_campaign, deposit_budget, fund_campaign, transition
    from app.core.db import utcnow
    from app.core.money import Money
    from app.extensions import db

    app = _app(server)
    with app.app_context():
        deposit_budget(key=f"bench-{secrets.token_hex(8)}", amount=Money(budget_fen), merchant_id=merchant_id)
        now = utcnow()
        campaign = create_campaign(
            merchant_id=merchant_id,
            name="Bench campaign",
            starts_at=now - timedelta(minutes=1),
            ends_at=now + timedelta(days=30),
            rules=rules,
            actor=CLI,
        )
        transition(merchant_id=merchant_id, campaign_id=campaign.id, to=CampaignStatus.ACTIVE, actor=CLI)
        fund_campaign(
            merchant_id=merchant_id,
            campaign_id=campaign.id,
            amount=Money(budget_fen),
            source="merchant",
            key=f"bench-fund-{campaign.id}",
            actor=CLI,
        )
        db.session.commit()
        campaign_id = campaign.id
        db.engine.dispose()
    return campaign_id


@dataclass(frozen=True)
class SignedIn:
    """A consumer of a seeded merchant with a session token: the headers of their mini-program calls."""

    consumer_id: int
    headers: dict[str, str]


def seed_consumer(server: Server, merchant: PayMerchant, *, wallet_entries: int = 0) -> SignedIn:
    """A new signed-in consumer of ``merchant`` whose wallet has ``wallet_entries`` ledger entries
    (rebates booked pending, every second one settled), posted through ``post_entry``."""
    from app.consumers.models import Consumer
    from app.consumers.sessions import issue_session
    from app.core.money import Money
    from app.extensions import db
    from app.ledger.accounts import consumer_accounts, platform_account
    from app.ledger.models import AccountKind, EntryReason
    from app.ledger.service import post_entry

    app = _app(server)
    with app.app_context():
        consumer = Consumer(merchant_id=merchant.merchant_id, nickname="bench wallet")
        db.session.add(consumer)
        db.session.flush()
        token, _ = issue_session(consumer)
        wallet = consumer_accounts(merchant.merchant_id, consumer.id)
        # Money from outside the ledger (the funding source may go negative), so no budget is needed.
        budget = platform_account(AccountKind.PLATFORM_FUNDING_SOURCE)
        for n in range(wallet_entries):
            source, target = (budget, wallet.pending) if n % 2 == 0 else (wallet.pending, wallet.available)
            post_entry(
                key=f"bench-wallet:{consumer.id}:{n}",
                reason=EntryReason.REBATE_PENDING if n % 2 == 0 else EntryReason.SETTLE,
                cause_type="bench",
                cause_id=str(n),
                lines=[(source, Money(-1)), (target, Money(1))],
                merchant_id=merchant.merchant_id,
            )
        db.session.commit()
        signed_in = SignedIn(consumer.id, {"Authorization": f"Bearer {token}", "X-WX-AppId": merchant.appid})
        db.engine.dispose()
    return signed_in


def behaviour_event(consumer: SignedIn) -> Request:
    """``POST /api/mp/v1/events`` with one event: authenticate, insert one row, commit."""
    from app.core.db import utcnow

    body = json.dumps({"events": [{"type": "view", "sku": "TEA-1", "occurred_at": utcnow().isoformat()}]})
    headers = consumer.headers | {"Content-Type": "application/json"}
    return Request("POST", "/api/mp/v1/events", body.encode(), headers)


def transaction_success(merchant: PayMerchant, attempt: Attempt, *, timestamp: int | None = None) -> Request:
    """A signed, encrypted ``TRANSACTION.SUCCESS`` for ``attempt``, as WeChat Pay would POST it.

    The timestamp is signed, and Hongli accepts it for ±5 minutes only: build close to sending.
    """
    from wechat.crypto import AUTH_SCHEMA, aead_encrypt, generate_nonce, rsa_sha256_sign, v3_response_message

    transaction_id = f"42000{secrets.randbelow(10**23):023d}"
    resource = {
        "mchid": merchant.mchid,
        "appid": merchant.appid,
        "out_trade_no": attempt.out_trade_no,
        "transaction_id": transaction_id,
        "trade_type": "JSAPI",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "bank_type": "OTHERS",
        "attach": "",
        "success_time": "2026-01-01T12:00:00+08:00",
        "payer": {"openid": merchant.openid},
        "amount": {
            "total": attempt.amount_fen,
            "payer_total": attempt.amount_fen,
            "currency": "CNY",
            "payer_currency": "CNY",
        },
    }
    aead_nonce = generate_nonce(12)
    envelope = {
        "id": f"EV-{transaction_id}",
        "create_time": "2026-01-01T12:00:01+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "TRANSACTION.SUCCESS",
        "summary": "支付成功",
        "resource": {
            "original_type": "transaction",
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": aead_encrypt(
                merchant.apiv3_key, aead_nonce, json.dumps(resource).encode(), "transaction"
            ),
            "associated_data": "transaction",
            "nonce": aead_nonce,
        },
    }
    body = json.dumps(envelope, ensure_ascii=False).encode()
    ts = str(timestamp if timestamp is not None else int(time.time()))
    nonce = generate_nonce(32)
    headers = {
        "Content-Type": "application/json",
        "Wechatpay-Timestamp": ts,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Serial": PUBLIC_KEY_ID,
        "Wechatpay-Signature": rsa_sha256_sign(merchant.platform_key, v3_response_message(ts, nonce, body)),
        "Wechatpay-Signature-Type": AUTH_SCHEMA,
    }
    return Request("POST", f"/wechat/{merchant.slug}/pay/notify", body, headers)


def post_each(
    server: Server, requests: Sequence[Request], *, expect: int = 204, connections: int = 4
) -> None:
    """Send every request once (over a few keep-alive connections); raise unless each answers ``expect``."""
    failures: list[str] = []

    def send(share: Sequence[Request]) -> None:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
        for req in share:
            conn.request(req.method, req.path, body=req.body or None, headers=req.headers)
            response = conn.getresponse()
            response.read()
            if response.status != expect:
                failures.append(f"{req.method} {req.path} -> {response.status}")
        conn.close()

    threads = [threading.Thread(target=send, args=(requests[i::connections],)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(requests)} answered otherwise, first: {failures[0]}")


def oa_subscribe(merchant: PayMerchant, openid: str, *, timestamp: int | None = None) -> Request:
    """A ``subscribe`` push for ``openid`` in safe mode, signed (signature and msg_signature) and encrypted
    as WeChat sends it to the message server. Accepted for ±5 minutes: build close to sending."""
    from wechat.crypto import sha1_sorted_signature
    from wechat.oa_messages import MessageCrypto

    assert merchant.oa is not None
    oa = merchant.oa
    ts = str(timestamp if timestamp is not None else int(time.time()))
    nonce = str(secrets.randbelow(10**10))
    inner = (
        f"<xml><ToUserName><![CDATA[{oa.original_id}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{ts}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event>"
        "<EventKey><![CDATA[]]></EventKey></xml>"
    ).encode()
    encrypted = MessageCrypto(oa.token, oa.encoding_aes_key, oa.appid).encrypt(inner)
    body = f"<xml><ToUserName><![CDATA[{oa.original_id}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    query = (
        f"signature={sha1_sorted_signature([oa.token, ts, nonce])}&timestamp={ts}&nonce={nonce}&openid={openid}"
        f"&encrypt_type=aes&msg_signature={sha1_sorted_signature([oa.token, ts, nonce, encrypted])}"
    )
    return Request("POST", f"/wechat/{merchant.slug}/oa?{query}", body.encode(), {"Content-Type": "text/xml"})
