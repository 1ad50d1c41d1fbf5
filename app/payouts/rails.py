"""The two payout rails behind one interface: what WeChat said, mapped onto payout outcomes.

Every call carries the payout's own bill number. Outcomes (protocol doc §5.2, §5.5, §6.1):
``accepted`` / ``succeeded`` / ``failed`` come from WeChat's own words; ``unknown`` is anything else
(timeout, SYSTEMERROR, unparsable, unknown code) and is resolved only by query or same-number resend;
``retry`` means WeChat certainly did nothing (NOTENOUGH, FREQ_LIMIT) — try later, same number;
``not_found`` is a query that found no bill.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from flask import current_app

from app.core.errors import Unavailable
from app.extensions import db
from app.gateway.clients import endpoints, http_session, platform_keys
from app.gateway.log import RecordingHook
from app.merchants.credentials import MerchantSecrets, open_secrets
from app.merchants.models import Merchant, PayoutRail
from app.payouts.capabilities import means_product_off
from wechat.errors import WeChatError
from wechat.gateway_log import GatewayHook
from wechat.pay_v2 import MerchantV2Credentials, PayV2Client
from wechat.pay_v3 import PayV3Client
from wechat.v3_http import MerchantV3Credentials
from wechat.verify import PlatformKeys

Kind = Literal["accepted", "succeeded", "failed", "unknown", "retry", "not_found"]

# A final error on create that names an existing bill: the number is taken, so the bill exists (§5.2
# FATAL_ERROR; §6.1 same out_bill_no with other parameters) — learn its state, never call it failed.
_BILL_EXISTS = frozenset({"FATAL_ERROR", "INVALID_REQUEST", "ALREADY_EXISTS", "RESOURCE_ALREADY_EXISTS"})
_NOT_FOUND = frozenset({"NOT_FOUND", "RESOURCE_NOT_EXISTS", "ORDER_NOT_EXIST"})

_TRANSFER_STATES: dict[str, Kind] = {
    "ACCEPTED": "accepted",
    "ACCEPT": "accepted",  # §6.1 DISAGREE: both spellings
    "PROCESSING": "accepted",
    "WAIT_USER_CONFIRM": "accepted",
    "TRANSFERING": "accepted",
    "CANCELING": "accepted",
    "SUCCESS": "succeeded",
    "FAIL": "failed",
    "CANCELLED": "failed",
}
_REDPACK_STATES: dict[str, Kind] = {
    "SENDING": "accepted",
    "SENT": "accepted",
    "RFUND_ING": "accepted",
    "RECEIVED": "succeeded",
    "FAILED": "failed",
    "REFUND": "failed",
}

TRANSFER_SCENE_ID = "1000"  # 现金营销 (§6.1)
CLIENT_IP = "127.0.0.1"


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    state: str | None = None  # WeChat's literal state
    wechat_id: str | None = None
    package_info: str | None = None
    code: str | None = None
    message: str | None = None
    calls: tuple[str, ...] = ()  # what this pass asked WeChat, in order: "submit", "query", "cancel"
    amount_fen: int | None = None  # the bill's amount as WeChat recorded it (queries), for reconciliation
    # a red packet's: what WeChat gave back to the merchant unopened (``refund_amount``, once it has), and
    # how many of its packets were opened (``hblist``: a fission packet's seed and friends)
    refunded_fen: int | None = None
    opened: int | None = None


@dataclass(frozen=True)
class PayoutOrder:
    """Everything a call needs, read from the row before the transaction ends (no DB during calls)."""

    payout_id: int
    bill_no: str
    rail: PayoutRail
    appid: str
    openid: str
    amount_fen: int
    group_size: int | None = None  # a fission red packet (sendgroupredpack) of this many shares


@dataclass(frozen=True)
class PayoutMerchant:
    """What the rails need of a merchant (its name, WeChat Pay identity and opened secrets), read from the
    row once: a payout pass must not select and unseal the merchant for every call."""

    id: int
    slug: str
    name: str
    mchid: str | None
    pay_serial_no: str | None
    updated_at: datetime
    keys: PlatformKeys
    secrets: MerchantSecrets = field(repr=False)

    @classmethod
    def of(cls, merchant: Merchant) -> PayoutMerchant:
        return cls(
            id=merchant.id,
            slug=merchant.slug,
            name=merchant.name,
            mchid=merchant.mchid,
            pay_serial_no=merchant.pay_serial_no,
            updated_at=merchant.updated_at,
            keys=platform_keys(merchant),
            secrets=open_secrets(merchant.id, merchant.sealed_credentials),
        )

    def pay_client(self, hook: GatewayHook) -> PayV3Client:
        """A Pay v3 client (as ``app.gateway.clients.pay_client``) reporting its exchanges to ``hook``."""
        secrets = self.secrets
        if not (self.mchid and self.pay_serial_no and secrets.pay_private_key_pem and secrets.apiv3_key):
            raise Unavailable(f"merchant {self.slug} has no WeChat Pay credentials")
        credentials = MerchantV3Credentials(
            mchid=self.mchid,
            serial_no=self.pay_serial_no,
            private_key_pem=secrets.pay_private_key_pem,
            apiv3_key=secrets.apiv3_key,
        )
        return PayV3Client(credentials, self.keys, endpoints(), session=http_session(), hook=hook)

    def pay_v2_client(self, hook: GatewayHook) -> PayV2Client:
        """A Pay v2 client (as ``app.gateway.clients.pay_v2_client``); use it as a context manager."""
        secrets = self.secrets
        if not (self.mchid and secrets.v2_api_key and secrets.client_cert_pem and secrets.client_key_pem):
            raise Unavailable(f"merchant {self.slug} has no WeChat Pay v2 key and client certificate")
        credentials = MerchantV2Credentials(
            mch_id=self.mchid,
            api_key=secrets.v2_api_key,
            cert_pem=secrets.client_cert_pem,
            key_pem=secrets.client_key_pem,
        )
        return PayV2Client(credentials, endpoints(), hook=hook)


_MERCHANTS = "hongli.payout_merchants"
_MERCHANTS_LOCK = threading.Lock()


def payout_merchant(merchant_id: int, updated_at: datetime | None) -> PayoutMerchant:
    """The merchant as the rails need it, kept per process under the row's ``updated_at`` (read with the
    payout, in the statement that claims it): any committed change to the merchant is seen at the next pass.
    Without ``updated_at`` the row is read."""
    cache: dict[int, PayoutMerchant] = current_app.extensions.setdefault(_MERCHANTS, {})
    if updated_at is not None:
        with _MERCHANTS_LOCK:
            cached = cache.get(merchant_id)
        if cached is not None and cached.updated_at == updated_at:
            return cached
    merchant = db.session.get(Merchant, merchant_id)
    if merchant is None:
        raise LookupError(f"no merchant {merchant_id}")
    fresh = PayoutMerchant.of(merchant)
    with _MERCHANTS_LOCK:
        cache[merchant_id] = fresh
    return fresh


def _payout_merchant(merchant: Merchant | PayoutMerchant) -> PayoutMerchant:
    return merchant if isinstance(merchant, PayoutMerchant) else PayoutMerchant.of(merchant)


def _error(exc: WeChatError, *, on_create: bool) -> Outcome:
    code = exc.code or ""
    if on_create and means_product_off(code, exc.message):
        # The account has no cash red packets: nothing was sent (the caller switches the product off and
        # pays on the default rail). Checked first: PRODUCT_AUTHORITY_UNOPEN is no code §5.2 lists.
        return Outcome("failed", code=code or PRODUCT_OFF, message=exc.message)
    if code in _NOT_FOUND and not on_create:
        return Outcome("not_found", code=code, message=exc.message)
    if exc.retryable:
        return Outcome("retry", code=code, message=exc.message)
    if exc.ambiguous or (on_create and code in _BILL_EXISTS):
        return Outcome("unknown", code=code, message=exc.message)
    if on_create:
        # Rejected for good before anything was created: nothing was paid.
        return Outcome("failed", code=code, message=exc.message)
    return Outcome("unknown", code=code, message=exc.message)


def submit(
    merchant: Merchant | PayoutMerchant, order: PayoutOrder, *, log: GatewayHook | None = None
) -> Outcome:
    """Create the transfer bill / send the red packet under ``order.bill_no``. Exchanges go to ``log``
    (default: the gateway log, in the caller's transaction)."""
    merchant = _payout_merchant(merchant)
    hook = log if log is not None else RecordingHook(merchant.id)
    try:
        if order.rail is PayoutRail.TRANSFER_BILL:
            return _transfer_answer(
                merchant.pay_client(hook).create_transfer_bill(
                    appid=order.appid,
                    out_bill_no=order.bill_no,
                    transfer_scene_id=TRANSFER_SCENE_ID,
                    openid=order.openid,
                    transfer_amount=order.amount_fen,
                    transfer_remark="余额提现",
                    transfer_scene_report_infos=[
                        {"info_type": "活动名称", "info_content": "返利提现"},
                        {"info_type": "奖励说明", "info_content": "返利余额提现到零钱"},
                    ],
                )
            )
        if order.group_size is not None:
            return _send_group(merchant, order, hook)
        with merchant.pay_v2_client(hook) as client:
            answer = client.send_red_packet(
                mch_billno=order.bill_no,
                wxappid=order.appid,
                re_openid=order.openid,
                total_amount=order.amount_fen,
                send_name=merchant.name[:32],
                wishing="返利提现",
                act_name="余额提现",
                remark="返利余额提现",
                client_ip=CLIENT_IP,
                # §5.1: scene_id is required outside 1–200 yuan.
                scene_id=None if 100 <= order.amount_fen <= 20000 else "PRODUCT_5",
            )
        return Outcome("accepted", state="SENT", wechat_id=_text(answer.get("send_listid")))
    except WeChatError as exc:
        return _error(exc, on_create=True)
    except Unavailable as exc:
        return _unconfigured(exc)


def _send_group(merchant: PayoutMerchant, order: PayoutOrder, hook: GatewayHook) -> Outcome:
    """One fission packet (§5.3): ``total_amount`` split ALL_RAND by WeChat into ``total_num`` shares, the
    first to ``re_openid``, the rest to the friends they share it with. No ``scene_id``: only accounts that
    opened a scene may send one (wechat-products-2026); the pool keeps each share's average in 1–200 yuan."""
    assert order.group_size is not None
    with merchant.pay_v2_client(hook) as client:
        answer = client.send_group_red_packet(
            mch_billno=order.bill_no,
            wxappid=order.appid,
            re_openid=order.openid,
            total_amount=order.amount_fen,
            total_num=order.group_size,
            send_name=merchant.name[:32],
            wishing="恭喜发财，分享给好友一起抢",
            act_name="裂变红包",
            remark="分享给好友一起领",
        )
    return Outcome("accepted", state="SENT", wechat_id=_text(answer.get("send_listid")))


def query(
    merchant: Merchant | PayoutMerchant, order: PayoutOrder, *, log: GatewayHook | None = None
) -> Outcome:
    """WeChat's record of ``order.bill_no``."""
    merchant = _payout_merchant(merchant)
    hook = log if log is not None else RecordingHook(merchant.id)
    try:
        if order.rail is PayoutRail.TRANSFER_BILL:
            return _transfer_answer(merchant.pay_client(hook).query_transfer_bill(order.bill_no))
        with merchant.pay_v2_client(hook) as client:
            answer = client.query_red_packet(mch_billno=order.bill_no, appid=order.appid)
        state = _text(answer.get("status")) or ""
        kind = _REDPACK_STATES.get(state, "unknown")
        return Outcome(
            kind,
            state=state,
            wechat_id=_text(answer.get("detail_id")),
            code=_text(answer.get("reason")),
            amount_fen=_fen(answer.get("total_amount")),
            refunded_fen=_fen(answer.get("refund_amount")),
            opened=_receipts(answer.get("hblist")),
        )
    except WeChatError as exc:
        return _error(exc, on_create=False)
    except Unavailable as exc:
        return _unconfigured(exc)


def cancel(
    merchant: Merchant | PayoutMerchant, order: PayoutOrder, *, log: GatewayHook | None = None
) -> Outcome:
    """Cancel an unconfirmed transfer bill; success only means "accepted" (CANCELING), §6.1."""
    merchant = _payout_merchant(merchant)
    hook = log if log is not None else RecordingHook(merchant.id)
    try:
        return _transfer_answer(merchant.pay_client(hook).cancel_transfer_bill(order.bill_no))
    except WeChatError as exc:
        return _error(exc, on_create=False)
    except Unavailable as exc:
        return _unconfigured(exc)


NO_CREDENTIALS = "NO_CREDENTIALS"
PRODUCT_OFF = "PRODUCT_AUTHORITY_UNOPEN"  # the failure code when WeChat's refusal carried no code of its own


def _unconfigured(exc: Unavailable) -> Outcome:
    # Nothing was sent: the merchant's keys or client certificate are missing. Wait for a person.
    return Outcome("retry", code=NO_CREDENTIALS, message=exc.message)


def _transfer_answer(answer: dict[str, Any]) -> Outcome:
    state = _text(answer.get("state")) or ""
    return Outcome(
        _TRANSFER_STATES.get(state, "unknown"),
        state=state,
        wechat_id=_text(answer.get("transfer_bill_no")),
        package_info=_text(answer.get("package_info")),
        code=_text(answer.get("fail_reason")),
        amount_fen=_fen(answer.get("transfer_amount")),
    )


def _receipts(hblist: object) -> int | None:
    """How many ``hbinfo`` items a ``gethbinfo`` answer's ``hblist`` holds (None: no list)."""
    if not isinstance(hblist, dict):
        return None
    items = hblist.get("hbinfo")
    if isinstance(items, list):
        return sum(1 for item in items if isinstance(item, dict))
    return 1 if isinstance(items, dict) else None


def _fen(value: object) -> int | None:
    text = _text(value)
    return int(text) if text is not None and text.isascii() and text.isdigit() else None


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None
