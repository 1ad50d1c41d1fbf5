"""``--state-file``: save the world to JSON on shutdown and restore it on start.

Persisted: every state table, balances, idempotency records, the RNG position and business time. Timed
transitions (refund completion, red-packet refund, transfer expiry) are re-armed from the restored objects.
Not persisted: armed faults and the notification log, so deliveries still pending at shutdown are lost.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from wechat.sandbox import crypto
from wechat.sandbox.pay import arm_refund_timer
from wechat.sandbox.payouts import arm_redpack_timer, arm_transfer_timer
from wechat.sandbox.state import (
    AccessToken,
    App,
    BillMismatch,
    BusifavorCoupon,
    BusifavorStock,
    Card,
    CardCode,
    Coupon,
    IdemEntry,
    LoginCode,
    Merchant,
    OAuthCode,
    OAuthToken,
    Order,
    PhoneCode,
    QrTicket,
    RedPacket,
    Refund,
    SentMessage,
    Stock,
    TransferBill,
    User,
    V2Transfer,
)
from wechat.sandbox.tls import SandboxCA
from wechat.sandbox.world import World

FORMAT = 1

# table name -> (class, function giving the dict key of a row)
_TABLES: dict[str, tuple[type[Any], Any]] = {
    "apps": (App, lambda r: r.appid),
    "users": (User, lambda r: r.id),
    "login_codes": (LoginCode, lambda r: r.code),
    "oauth_codes": (OAuthCode, lambda r: r.code),
    "access_tokens": (AccessToken, lambda r: r.token),
    "orders": (Order, lambda r: (r.mchid, r.out_trade_no)),
    "refunds": (Refund, lambda r: (r.mchid, r.out_refund_no)),
    "transfer_bills": (TransferBill, lambda r: (r.mchid, r.out_bill_no)),
    "redpacks": (RedPacket, lambda r: (r.mchid, r.mch_billno)),
    "v2_transfers": (V2Transfer, lambda r: (r.mchid, r.partner_trade_no)),
    "stocks": (Stock, lambda r: r.stock_id),
    "coupons": (Coupon, lambda r: r.coupon_id),
    "busifavor_stocks": (BusifavorStock, lambda r: r.stock_id),
    "busifavor_coupons": (BusifavorCoupon, lambda r: (r.stock_id, r.coupon_code)),
    "qr_tickets": (QrTicket, lambda r: r.ticket),
    "phone_codes": (PhoneCode, lambda r: r.code),
    "cards": (Card, lambda r: r.card_id),
    "card_codes": (CardCode, lambda r: r.code),
}


def _private_pem(key: rsa.RSAPrivateKey) -> str:
    return crypto.private_key_pem(key)


def _load_private(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


def _merchant_out(m: Merchant) -> dict[str, Any]:
    out = {f.name: getattr(m, f.name) for f in dataclasses.fields(m)}
    out["appids"] = sorted(m.appids)
    out["merchant_public_key"] = crypto.public_key_pem(m.merchant_public_key)
    out["platform_key"] = _private_pem(m.platform_key)
    out["pubkey_key"] = _private_pem(m.pubkey_key)
    return out


def _merchant_in(d: dict[str, Any]) -> Merchant:
    d = dict(d)
    d["appids"] = set(d["appids"])
    d["merchant_public_key"] = crypto.load_public_key(d["merchant_public_key"])
    d["platform_key"] = _load_private(d["platform_key"])
    d["pubkey_key"] = _load_private(d["pubkey_key"])
    return Merchant(**d)


def dump(world: World) -> dict[str, Any]:
    """The world as a JSON-serialisable dict."""
    with world.lock:
        st = world.state
        out: dict[str, Any] = {
            "format": FORMAT,
            "now": world.clock.now(),
            "rng": world.rng.getstate(),
            "merchants": [_merchant_out(m) for m in st.merchants.values()],
            "ca": {"key": _private_pem(world.ca().key), "cert": world.ca().cert_pem},
            "oauth_tokens": [dataclasses.asdict(t) for t in st.oauth_tokens.values()],
            "tickets": [[a, k, t, e] for (a, k), (t, e) in st.tickets.items()],
            "session_keys": [[u, a, key] for (u, a), key in st.session_keys.items()],
            "bill_tokens": {tok: list(v) for tok, v in st.bill_tokens.items()},
            "bill_mismatches": [dataclasses.asdict(m) for m in st.bill_mismatches],
            "subscribe_consents": [[a, u, t, n] for (a, u, t), n in st.subscribe_consents.items()],
            "sent_messages": [dataclasses.asdict(m) for m in st.sent_messages],
            "follows": [[a, u, since] for (a, u), since in st.follows.items()],
            "idempotency": [
                [m, api, k, e.fingerprint, e.status, e.payload] for (m, api, k), e in st.idempotency.items()
            ],
        }
        for name in _TABLES:
            out[name] = [dataclasses.asdict(row) for row in getattr(st, name).values()]
        return out


def load(world: World, data: dict[str, Any]) -> None:
    """Restore ``data`` (from :func:`dump`) into a fresh world and re-arm timed transitions."""
    if data.get("format") != FORMAT:
        raise ValueError(f"unsupported state file format {data.get('format')!r}")
    with world.lock:
        st = world.state
        world.clock.set_to(float(data["now"]))
        world.rng.setstate(data["rng"])
        if data.get("ca"):
            cert = x509.load_pem_x509_certificate(data["ca"]["cert"].encode())
            world.restore_ca(SandboxCA(_load_private(data["ca"]["key"]), cert))
        st.merchants = {m.mchid: m for m in map(_merchant_in, data["merchants"])}
        for name, (cls, key) in _TABLES.items():
            table = getattr(st, name)
            for row in data.get(name, []):
                obj = cls(**row)
                table[key(obj)] = obj
        for row in data.get("oauth_tokens", []):
            tok = OAuthToken(**row)
            st.oauth_tokens[tok.access_token] = tok
            st.refresh_tokens[tok.refresh_token] = tok
        st.tickets = {(a, k): (t, e) for a, k, t, e in data.get("tickets", [])}
        st.session_keys = {(u, a): key for u, a, key in data.get("session_keys", [])}
        st.bill_tokens = {
            tok: (v[0], v[1], v[2], bool(v[3]), float(v[4])) for tok, v in data.get("bill_tokens", {}).items()
        }
        st.bill_mismatches = [BillMismatch(**m) for m in data.get("bill_mismatches", [])]
        st.subscribe_consents = {(a, u, t): int(n) for a, u, t, n in data.get("subscribe_consents", [])}
        st.sent_messages = [SentMessage(**m) for m in data.get("sent_messages", [])]
        st.follows = {(a, u): float(since) for a, u, since in data.get("follows", [])}
        st.idempotency = {
            (m, api, k): IdemEntry(fp, status, payload)
            for m, api, k, fp, status, payload in data.get("idempotency", [])
        }
        for refund in st.refunds.values():
            arm_refund_timer(world, refund)
        for packet in st.redpacks.values():
            arm_redpack_timer(world, packet)
        for bill in st.transfer_bills.values():
            arm_transfer_timer(world, bill)


def save_file(world: World, path: Path) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a state file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(dump(world), ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def load_file(world: World, path: Path) -> bool:
    """Load ``path`` if it exists; returns whether it did."""
    if not path.exists():
        return False
    load(world, json.loads(path.read_text(encoding="utf-8")))
    return True
