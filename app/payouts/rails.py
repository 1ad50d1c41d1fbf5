"""The two payout rails behind one interface: what WeChat said, mapped onto payout outcomes.

Every call carries the payout's own bill number. Outcomes (protocol doc §5.2, §5.5, §6.1):
``accepted`` / ``succeeded`` / ``failed`` come from WeChat's own words; ``unknown`` is anything else
(timeout, SYSTEMERROR, unparsable, unknown code) and is resolved only by query or same-number resend;
``retry`` means WeChat certainly did nothing (NOTENOUGH, FREQ_LIMIT) — try later, same number;
``not_found`` is a query that found no bill.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from app.core.errors import Unavailable
from app.gateway.clients import pay_client, pay_v2_client
from app.merchants.models import Merchant, PayoutRail
from wechat.errors import WeChatError

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


@dataclass(frozen=True)
class PayoutOrder:
    """Everything a call needs, read from the row before the transaction ends (no DB during calls)."""

    payout_id: int
    bill_no: str
    rail: PayoutRail
    appid: str
    openid: str
    amount_fen: int


def _error(exc: WeChatError, *, on_create: bool) -> Outcome:
    code = exc.code or ""
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


def submit(merchant: Merchant, order: PayoutOrder) -> Outcome:
    """Create the transfer bill / send the red packet under ``order.bill_no``."""
    try:
        if order.rail is PayoutRail.TRANSFER_BILL:
            return _transfer_answer(
                pay_client(merchant).create_transfer_bill(
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
        with pay_v2_client(merchant) as client:
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


def query(merchant: Merchant, order: PayoutOrder) -> Outcome:
    """WeChat's record of ``order.bill_no``."""
    try:
        if order.rail is PayoutRail.TRANSFER_BILL:
            return _transfer_answer(pay_client(merchant).query_transfer_bill(order.bill_no))
        with pay_v2_client(merchant) as client:
            answer = client.query_red_packet(mch_billno=order.bill_no, appid=order.appid)
        state = _text(answer.get("status")) or ""
        kind = _REDPACK_STATES.get(state, "unknown")
        return Outcome(
            kind,
            state=state,
            wechat_id=_text(answer.get("detail_id")),
            code=_text(answer.get("reason")),
            amount_fen=_fen(answer.get("total_amount")),
        )
    except WeChatError as exc:
        return _error(exc, on_create=False)
    except Unavailable as exc:
        return _unconfigured(exc)


def cancel(merchant: Merchant, order: PayoutOrder) -> Outcome:
    """Cancel an unconfirmed transfer bill; success only means "accepted" (CANCELING), §6.1."""
    try:
        return _transfer_answer(pay_client(merchant).cancel_transfer_bill(order.bill_no))
    except WeChatError as exc:
        return _error(exc, on_create=False)
    except Unavailable as exc:
        return _unconfigured(exc)


NO_CREDENTIALS = "NO_CREDENTIALS"


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


def _fen(value: object) -> int | None:
    text = _text(value)
    return int(text) if text is not None and text.isascii() and text.isdigit() else None


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None
