"""Daily reconciliation of WeChat's trade bill against Hongli's payments and refunds (§8).

Dates are China dates (WeChat's bill day). Reported differences: a payment or refund on one side
only, an amount mismatch, or a state mismatch (WeChat paid, Hongli not).
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select

from app.core.money import Money
from app.extensions import db
from app.gateway.clients import pay_client
from app.merchants.models import Merchant
from app.orders.models import Order
from app.payments.models import AttemptStatus, PaymentAttempt, Refund, RefundStatus
from app.reviews.service import flag_for_review
from wechat.errors import WeChatError

CHINA = dt.timezone(dt.timedelta(hours=8))
_NO_BILL = {"NO_STATEMENT_EXIST", "STATEMENT_CREATING"}


@dataclass(frozen=True)
class BillRow:
    kind: str  # payment | refund
    key: str  # out_trade_no or our refund number
    amount: Money
    # Payments only: what WeChat settles to the merchant (应结订单金额) and the vouchers used (代金券金额).
    settled: Money | None = None
    vouchers: Money = field(default_factory=Money.zero)


@dataclass(frozen=True)
class Difference:
    kind: str  # missing_in_hongli | missing_in_wechat | amount_mismatch | state_mismatch
    record: str  # payment | refund
    key: str
    wechat_fen: int | None
    hongli_fen: int | None
    detail: str = ""


@dataclass
class Report:
    merchant: str
    day: dt.date
    payments_checked: int = 0
    refunds_checked: int = 0
    differences: list[Difference] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.differences


def parse_trade_bill(content: bytes) -> list[BillRow]:
    """Detail rows of a trade bill (backtick-prefixed CSV, yuan amounts), by header name."""
    lines = content.decode("utf-8-sig").splitlines()
    if not lines:
        return []
    header = [h.strip() for h in lines[0].split(",")]
    index = {name: i for i, name in enumerate(header)}
    rows: list[BillRow] = []
    for line in lines[1:]:
        cells = [c.strip().removeprefix("`") for c in next(csv.reader([line]))]
        if cells and cells[0].startswith("总交易单数"):
            break  # the summary section
        if len(cells) > len(header):
            # A product name containing commas: fold the extra cells back into it.
            extra = len(cells) - len(header)
            name_at = index.get("商品名称", 20)
            cells[name_at : name_at + extra + 1] = [",".join(cells[name_at : name_at + extra + 1])]
        state = cells[index["交易状态"]]
        if state == "SUCCESS":
            settled = Money.from_yuan(cells[index["应结订单金额"]]) if "应结订单金额" in index else None
            vouchers = Money.from_yuan(cells[index["代金券金额"]]) if "代金券金额" in index else Money(0)
            amount = Money.from_yuan(cells[index["订单金额"]])
            rows.append(BillRow("payment", cells[index["商户订单号"]], amount, settled, vouchers))
        elif state == "REFUND":
            rows.append(
                BillRow("refund", cells[index["商户退款单号"]], Money.from_yuan(cells[index["退款金额"]]))
            )
    return rows


def _day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(), CHINA)
    return start, start + dt.timedelta(days=1)


def reconcile_merchant(merchant: Merchant, day: dt.date, *, flag: bool = True) -> Report:
    """Download ``day``'s trade bill for ``merchant`` and compare it with Hongli's records."""
    report = Report(merchant.slug, day)
    client = pay_client(merchant)
    try:
        bill = client.trade_bill(day)
        wechat_rows = parse_trade_bill(client.download_bill(bill))
    except WeChatError as exc:
        if exc.code not in _NO_BILL:
            raise
        wechat_rows = []
    start, end = _day_bounds(day)
    ours_paid = {
        attempt.out_trade_no: attempt
        for attempt, _ in db.session.execute(
            select(PaymentAttempt, Order)
            .join(Order, Order.id == PaymentAttempt.order_id)
            .where(
                PaymentAttempt.merchant_id == merchant.id,
                PaymentAttempt.status == AttemptStatus.PAID,
                Order.paid_at >= start,
                Order.paid_at < end,
            )
        )
    }
    ours_refunded = {
        refund.wechat_refund_no: refund
        for refund in db.session.scalars(
            select(Refund).where(
                Refund.merchant_id == merchant.id,
                Refund.status == RefundStatus.SUCCEEDED,
                Refund.succeeded_at >= start,
                Refund.succeeded_at < end,
            )
        )
    }
    seen_payments, seen_refunds = set(), set()
    for row in wechat_rows:
        if row.kind == "payment":
            seen_payments.add(row.key)
            _compare_payment(merchant, report, row, ours_paid.get(row.key))
        else:
            seen_refunds.add(row.key)
            _compare_refund(merchant, report, row, ours_refunded.get(row.key))
    for key, attempt in ours_paid.items():
        if key not in seen_payments:
            report.differences.append(
                Difference("missing_in_wechat", "payment", key, None, attempt.amount.fen)
            )
    for key, refund in ours_refunded.items():
        if key not in seen_refunds:
            report.differences.append(Difference("missing_in_wechat", "refund", key, None, refund.amount.fen))
    report.payments_checked = len(seen_payments | set(ours_paid))
    report.refunds_checked = len(seen_refunds | set(ours_refunded))
    if flag:
        for difference in report.differences:
            flag_for_review(
                merchant_id=merchant.id,
                kind="reconciliation",
                reason=f"{difference.kind} ({difference.record})",
                reference=f"{day.isoformat()}:{difference.record}:{difference.key}",
                details={
                    "wechat_fen": difference.wechat_fen,
                    "hongli_fen": difference.hongli_fen,
                    "detail": difference.detail,
                },
            )
    return report


def _compare_payment(
    merchant: Merchant, report: Report, row: BillRow, attempt: PaymentAttempt | None
) -> None:
    if attempt is None:
        known = db.session.scalar(
            select(PaymentAttempt).where(
                PaymentAttempt.merchant_id == merchant.id, PaymentAttempt.out_trade_no == row.key
            )
        )
        if known is None:
            report.differences.append(
                Difference("missing_in_hongli", "payment", row.key, row.amount.fen, None)
            )
        elif known.status is not AttemptStatus.PAID:
            report.differences.append(
                Difference(
                    "state_mismatch",
                    "payment",
                    row.key,
                    row.amount.fen,
                    known.amount.fen,
                    f"WeChat: paid; Hongli: {known.status.value}",
                )
            )
        # else: paid in Hongli on another day (a notification after midnight) — not a difference.
        return
    if attempt.amount != row.amount:
        report.differences.append(
            Difference("amount_mismatch", "payment", row.key, row.amount.fen, attempt.amount.fen)
        )
    elif row.settled is not None and not row.amount - row.vouchers <= row.settled <= row.amount:
        # The settlement is the order amount less merchant-funded vouchers, never anything else: another
        # figure means WeChat pays out a different sum than the order it confirmed.
        report.differences.append(
            Difference(
                "amount_mismatch", "payment", row.key, row.settled.fen, attempt.amount.fen, "settled amount"
            )
        )


def _compare_refund(merchant: Merchant, report: Report, row: BillRow, refund: Refund | None) -> None:
    if refund is None:
        known = db.session.scalar(
            select(Refund).where(Refund.merchant_id == merchant.id, Refund.wechat_refund_no == row.key)
        )
        if known is None:
            report.differences.append(
                Difference("missing_in_hongli", "refund", row.key, row.amount.fen, None)
            )
        elif known.status is not RefundStatus.SUCCEEDED:
            report.differences.append(
                Difference(
                    "state_mismatch",
                    "refund",
                    row.key,
                    row.amount.fen,
                    known.amount.fen,
                    f"WeChat: refunded; Hongli: {known.status.value}",
                )
            )
        return
    if refund.amount != row.amount:
        report.differences.append(
            Difference("amount_mismatch", "refund", row.key, row.amount.fen, refund.amount.fen)
        )


def reconcile_all(day: dt.date, slug: str | None = None) -> list[Report]:
    """Reconcile every merchant with WeChat Pay (or just ``slug``); a suspended one too, since payments
    and refunds already under way still settle for it."""
    query = select(Merchant).where(Merchant.mchid.is_not(None))
    if slug:
        query = query.where(Merchant.slug == slug)
    return [reconcile_merchant(merchant, day) for merchant in db.session.scalars(query.order_by(Merchant.id))]
