"""In-memory sandbox state: plain dataclasses guarded by one lock (``World.lock``).

Statuses are the literal WeChat strings (protocol doc §3.7–§7b); allowed transitions live in ``TRANSITIONS``.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

# Allowed transitions per state machine (§9 item 7). A move not listed here is a sandbox bug.
TRANSITIONS: dict[str, dict[str, set[str]]] = {
    "order": {"NOTPAY": {"SUCCESS", "CLOSED", "PAYERROR"}, "PAYERROR": {"CLOSED"}, "SUCCESS": {"REFUND"}},
    "refund": {"PROCESSING": {"SUCCESS", "ABNORMAL", "CLOSED"}, "ABNORMAL": {"SUCCESS", "CLOSED"}},
    "transfer_bill": {
        "ACCEPTED": {"PROCESSING", "WAIT_USER_CONFIRM", "SUCCESS", "FAIL", "CANCELING"},
        "PROCESSING": {"WAIT_USER_CONFIRM", "SUCCESS", "FAIL"},
        "WAIT_USER_CONFIRM": {"TRANSFERING", "CANCELING", "CANCELLED", "FAIL"},
        "TRANSFERING": {"SUCCESS", "FAIL"},
        "CANCELING": {"CANCELLED"},
    },
    "redpack": {
        "SENDING": {"SENT", "FAILED"},
        "SENT": {"RECEIVED", "RFUND_ING"},
        "RFUND_ING": {"REFUND"},
    },
    "coupon": {"SENDED": {"USED", "EXPIRED"}},
    # Merchant coupons (商家券): claimed through the plugin / H5, used, returned (退券) or deactivated (使券失效).
    "busifavor_coupon": {
        "SENDED": {"USED", "EXPIRED", "DEACTIVATED"},
        "USED": {"SENDED"},
    },
    "card_code": {"NORMAL": {"CONSUMED", "DELETE", "EXPIRE"}},
}


class InvalidTransition(RuntimeError):
    """Raised when code tries a transition outside ``TRANSITIONS``."""


def move(machine: str, obj: Any, new: str, attr: str = "status") -> None:
    """Set ``obj.<attr>`` to ``new`` after checking the transition table."""
    old = getattr(obj, attr)
    if new not in TRANSITIONS[machine].get(old, set()):
        raise InvalidTransition(f"{machine}: {old} -> {new}")
    setattr(obj, attr, new)


class Rng:
    """Seeded source of every id and nonce, so a seeded sandbox replays byte-identical ids."""

    def __init__(self, seed: int | None) -> None:
        self._r = random.Random(seed)  # noqa: S311 - determinism, not secrecy, is the point here

    def digits(self, n: int) -> str:
        return "".join(self._r.choice(string.digits) for _ in range(n))

    def alnum(self, n: int) -> str:
        return "".join(self._r.choice(string.ascii_letters + string.digits) for _ in range(n))

    def hex(self, n: int) -> str:
        return "".join(self._r.choice("0123456789ABCDEF") for _ in range(n))

    def bytes(self, n: int) -> bytes:
        return bytes(self._r.getrandbits(8) for _ in range(n))

    def choice(self, options: str) -> str:
        return self._r.choice(options)

    def randint(self, a: int, b: int) -> int:
        return self._r.randint(a, b)

    def random(self) -> float:
        return self._r.random()

    def getstate(self) -> list[Any]:
        """JSON-friendly generator state (for ``--state-file``)."""
        version, internal, gauss = self._r.getstate()
        return [version, list(internal), gauss]

    def setstate(self, state: list[Any]) -> None:
        self._r.setstate((state[0], tuple(state[1]), state[2]))


@dataclass
class Merchant:
    mchid: str
    appids: set[str]
    apiv3_key: str
    v2_key: str
    merchant_serial: str
    merchant_public_key: rsa.RSAPublicKey
    platform_key: rsa.RSAPrivateKey
    platform_serial: str
    platform_cert_pem: str
    platform_cert_not_before: float
    platform_cert_not_after: float
    pubkey_key: rsa.RSAPrivateKey
    pubkey_id: str
    # "platform" | "public_key" | "mixed": which key signs notifications (responses follow the request's
    # Wechatpay-Serial, §3.3 "During a switch").
    sign_mode: str = "platform"
    platform_certificates: bool = True
    notify_url: str | None = None
    coupon_notify_url: str | None = None
    transfer_confirm: bool = True
    balance_fen: int = 0
    duplicate_notifications: bool = False
    probe_notifications: bool = False
    merchant_cert_pem: str = ""  # API client certificate issued by the sandbox CA (v2 mTLS)
    # Merchant coupons (商家券): no new merchants since 2025-12-15, so off unless set; off → NO_AUTH.
    busifavor: bool = False
    busifavor_notify_url: str | None = None
    # Cash red packets (sendredpack / sendgroupredpack): only some accounts have them (90 days on WeChat
    # Pay, 30 of normal trading). On by default, as for the merchants the sandbox has always paid with them;
    # off → every send answers ``cash_red_packets_code`` (NO_AUTH or PRODUCT_AUTHORITY_UNOPEN).
    cash_red_packets: bool = True
    cash_red_packets_code: str = "NO_AUTH"


@dataclass
class App:
    appid: str
    secret: str
    kind: str  # "miniprogram" | "official"
    token: str = ""
    encoding_aes_key: str = ""
    server_url: str | None = None
    safe_mode: bool = False
    compatible_mode: bool = False  # with safe_mode: the plaintext fields travel beside <Encrypt>
    original_id: str = ""
    unionid_bound: bool = True


@dataclass
class User:
    id: str
    unionid: str
    nickname: str
    openids: dict[str, str] = field(default_factory=dict)  # appid -> openid


@dataclass
class QrTicket:
    """A parametric QR code of an official account (``qrcode/create``)."""

    ticket: str
    appid: str
    scene: str  # scene_str, or scene_id as text
    permanent: bool
    expires_at: float | None


@dataclass
class PhoneCode:
    """The code a ``getPhoneNumber`` button hands the mini-program (single use, 5 minutes)."""

    code: str
    appid: str
    user_id: str
    phone: str
    expires_at: float
    used: bool = False


@dataclass
class SentMessage:
    """A subscribe or template message a user received."""

    msgid: str
    kind: str  # "subscribe" | "template"
    appid: str
    user_id: str
    template_id: str
    data: dict[str, Any]
    link: str
    at: float


@dataclass
class LoginCode:
    code: str
    appid: str
    user_id: str
    expires_at: float
    used: bool = False


@dataclass
class OAuthCode:
    code: str
    appid: str
    user_id: str
    scope: str
    expires_at: float
    used: bool = False


@dataclass
class OAuthToken:
    access_token: str
    refresh_token: str
    appid: str
    user_id: str
    scope: str
    expires_at: float
    refresh_expires_at: float


@dataclass
class AccessToken:
    token: str
    appid: str
    expires_at: float
    stable: bool = False


@dataclass
class Order:
    mchid: str
    appid: str
    out_trade_no: str
    description: str
    total: int
    openid: str
    notify_url: str
    attach: str
    prepay_id: str
    created_at: float
    expires_at: float
    status: str = "NOTPAY"
    transaction_id: str = ""
    success_time: float | None = None
    payer_total: int = 0
    coupon_id: str | None = None
    refunded_fen: int = 0


@dataclass
class Refund:
    mchid: str
    out_refund_no: str
    refund_id: str
    out_trade_no: str
    transaction_id: str
    amount: int
    total: int
    notify_url: str | None
    reason: str
    created_at: float
    status: str = "PROCESSING"
    success_time: float | None = None


@dataclass
class TransferBill:
    mchid: str
    appid: str
    out_bill_no: str
    transfer_bill_no: str
    openid: str
    amount: int
    remark: str
    scene_id: str
    notify_url: str | None
    created_at: float
    updated_at: float
    state: str = "ACCEPTED"
    package_info: str = ""
    fail_reason: str = ""
    user_name_plain: str | None = None


@dataclass
class RedPacket:
    mchid: str
    appid: str
    mch_billno: str
    detail_id: str
    openid: str
    total_amount: int
    total_num: int
    hb_type: str  # NORMAL | GROUP
    send_name: str
    wishing: str
    act_name: str
    remark: str
    send_time: float
    status: str = "SENDING"
    rcv_time: float | None = None
    refund_time: float | None = None
    refund_amount: int = 0
    reason: str = ""
    shares: list[int] = field(default_factory=list)
    opened: int = 0  # shares opened so far (a group packet: the seed's first, then friends' in order)


@dataclass
class V2Transfer:
    mchid: str
    appid: str
    partner_trade_no: str
    payment_no: str
    openid: str
    amount: int
    desc: str
    payment_time: float
    status: str = "SUCCESS"


@dataclass
class Stock:
    stock_id: str
    creator_mchid: str
    name: str
    coupon_amount: int
    transaction_minimum: int
    max_coupons: int
    max_coupons_per_user: int
    available_begin: float
    available_end: float
    no_cash: bool
    created_at: float
    status: str = "unactivated"
    sent: int = 0


@dataclass
class Coupon:
    coupon_id: str
    stock_id: str
    openid: str
    appid: str
    created_at: float
    status: str = "SENDED"
    used_at: float | None = None
    transaction_id: str = ""


@dataclass
class BusifavorStock:
    """A merchant-coupon (商家券) stock; codes are the merchant's own (MERCHANT_API mode)."""

    stock_id: str
    creator_mchid: str
    name: str
    discount_amount: int
    transaction_minimum: int
    max_coupons: int
    max_coupons_per_user: int
    available_begin: float
    available_end: float
    code_mode: str
    created_at: float
    sent: int = 0


@dataclass
class BusifavorCoupon:
    coupon_code: str
    stock_id: str
    openid: str
    appid: str
    out_request_no: str
    created_at: float
    status: str = "SENDED"
    used_at: float | None = None
    use_request_no: str = ""


@dataclass
class Card:
    card_id: str
    appid: str
    card_type: str
    title: str
    quantity: int
    use_custom_code: bool
    begin_time: int
    end_time: int
    deposited: list[str] = field(default_factory=list)


@dataclass
class CardCode:
    code: str
    card_id: str
    openid: str
    encrypt_code: str
    outer_str: str = ""
    status: str = "NORMAL"


@dataclass
class BillMismatch:
    mchid: str
    bill_date: str
    kind: str  # "missing" | "extra" | "amount"
    out_trade_no: str
    amount_fen: int = 0


@dataclass
class IdemEntry:
    fingerprint: str
    status: int
    payload: Any


@dataclass
class State:
    """Every table of the sandbox world. Mutate only while holding ``World.lock``."""

    merchants: dict[str, Merchant] = field(default_factory=dict)
    apps: dict[str, App] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    login_codes: dict[str, LoginCode] = field(default_factory=dict)
    oauth_codes: dict[str, OAuthCode] = field(default_factory=dict)
    oauth_tokens: dict[str, OAuthToken] = field(default_factory=dict)
    refresh_tokens: dict[str, OAuthToken] = field(default_factory=dict)
    access_tokens: dict[str, AccessToken] = field(default_factory=dict)
    tickets: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)
    session_keys: dict[tuple[str, str], str] = field(default_factory=dict)  # (user id, appid) -> latest
    orders: dict[tuple[str, str], Order] = field(default_factory=dict)
    refunds: dict[tuple[str, str], Refund] = field(default_factory=dict)
    transfer_bills: dict[tuple[str, str], TransferBill] = field(default_factory=dict)
    redpacks: dict[tuple[str, str], RedPacket] = field(default_factory=dict)
    v2_transfers: dict[tuple[str, str], V2Transfer] = field(default_factory=dict)
    stocks: dict[str, Stock] = field(default_factory=dict)
    coupons: dict[str, Coupon] = field(default_factory=dict)
    busifavor_stocks: dict[str, BusifavorStock] = field(default_factory=dict)
    busifavor_coupons: dict[tuple[str, str], BusifavorCoupon] = field(default_factory=dict)  # (stock, code)
    qr_tickets: dict[str, QrTicket] = field(default_factory=dict)
    phone_codes: dict[str, PhoneCode] = field(default_factory=dict)
    # (appid, user id, template id) -> one-time consents given and not used yet
    subscribe_consents: dict[tuple[str, str, str], int] = field(default_factory=dict)
    sent_messages: list[SentMessage] = field(default_factory=list)
    follows: dict[tuple[str, str], float] = field(default_factory=dict)  # (appid, user id) -> since
    cards: dict[str, Card] = field(default_factory=dict)
    card_codes: dict[str, CardCode] = field(default_factory=dict)
    bill_tokens: dict[str, tuple[str, str, str, bool, float]] = field(default_factory=dict)
    bill_mismatches: list[BillMismatch] = field(default_factory=list)
    idempotency: dict[tuple[str, str, str], IdemEntry] = field(default_factory=dict)

    def user_by_openid(self, appid: str, openid: str) -> User | None:
        for user in self.users.values():
            if user.openids.get(appid) == openid:
                return user
        return None
