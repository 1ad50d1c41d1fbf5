"""Daily reconciliation of payouts with WeChat's records, bill by bill.

There is no payout bill file to download (not in the sandbox either), so every payout Hongli finished on
the China date is queried by its bill number (transfer bill query, §6.1; ``gethbinfo``, §5.5) — and so is
every earlier number of a renumbered payout, which must never have been paid. Differences: succeeded here
but not at WeChat, paid at WeChat but not here, an amount mismatch.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select

from app.extensions import db
from app.merchants.models import Merchant
from app.payments.reconciliation import CHINA, Difference
from app.payouts import rails
from app.payouts.models import Payout, PayoutStatus
from app.payouts.rails import PayoutOrder
from app.reviews.service import flag_for_review


def _day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(), CHINA)
    return start, start + dt.timedelta(days=1)


@dataclass
class PayoutReport:
    merchant: str
    day: dt.date
    payouts_checked: int = 0
    differences: list[Difference] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.differences


def _order(payout: Payout, bill_no: str) -> PayoutOrder:
    return PayoutOrder(payout.id, bill_no, payout.rail, payout.appid, payout.openid, payout.amount.fen)


def reconcile_payouts(merchant: Merchant, day: dt.date, *, flag: bool = True) -> PayoutReport:
    """Query WeChat for every payout of ``merchant`` finished on ``day`` and compare."""
    report = PayoutReport(merchant.slug, day)
    start, end = _day_bounds(day)
    payouts = db.session.scalars(
        select(Payout)
        .where(
            Payout.merchant_id == merchant.id,
            Payout.status.in_([PayoutStatus.SUCCEEDED, PayoutStatus.FAILED]),
            Payout.finished_at >= start,
            Payout.finished_at < end,
        )
        .order_by(Payout.id)
    ).all()
    for payout in payouts:
        assert payout.bill_no is not None
        report.payouts_checked += 1
        found = rails.query(merchant, _order(payout, payout.bill_no))
        ours = payout.amount.fen
        paid_there = found.kind == "succeeded"
        if found.kind in ("unknown", "retry"):
            report.differences.append(
                Difference("unverified", "payout", payout.bill_no, None, ours, f"query: {found.code}")
            )
        elif payout.status is PayoutStatus.SUCCEEDED and not paid_there:
            report.differences.append(
                Difference(
                    "missing_in_wechat",
                    "payout",
                    payout.bill_no,
                    found.amount_fen,
                    ours,
                    f"Hongli: succeeded; WeChat: {found.state or found.kind}",
                )
            )
        elif payout.status is PayoutStatus.FAILED and paid_there:
            report.differences.append(
                Difference(
                    "missing_in_hongli",
                    "payout",
                    payout.bill_no,
                    found.amount_fen,
                    ours,
                    f"WeChat: {found.state}; Hongli: failed ({payout.failure_code})",
                )
            )
        elif paid_there and found.amount_fen is not None and found.amount_fen != ours:
            report.differences.append(
                Difference("amount_mismatch", "payout", payout.bill_no, found.amount_fen, ours)
            )
        # A number replaced after WeChat proved it failed must have stayed unpaid.
        for old in sorted({str(h["old_bill_no"]) for h in payout.history if h.get("event") == "renumbered"}):
            earlier = rails.query(merchant, _order(payout, old))
            if earlier.kind == "succeeded":
                report.differences.append(
                    Difference(
                        "missing_in_hongli",
                        "payout",
                        old,
                        earlier.amount_fen,
                        None,
                        f"an earlier number of payout {payout.id} was paid",
                    )
                )
    if flag:
        for difference in report.differences:
            flag_for_review(
                merchant_id=merchant.id,
                kind="reconciliation",
                reason=f"{difference.kind} (payout)",
                reference=f"{day.isoformat()}:payout:{difference.key}",
                details={
                    "wechat_fen": difference.wechat_fen,
                    "hongli_fen": difference.hongli_fen,
                    "detail": difference.detail,
                },
            )
    return report


def reconcile_all_payouts(day: dt.date, slug: str | None = None) -> list[PayoutReport]:
    """Reconcile the payouts of every merchant with WeChat Pay (or just ``slug``); a suspended one too,
    since its payouts under way still finish."""
    query = select(Merchant).where(Merchant.mchid.is_not(None))
    if slug:
        query = query.where(Merchant.slug == slug)
    return [reconcile_payouts(m, day) for m in db.session.scalars(query.order_by(Merchant.id)).all()]
