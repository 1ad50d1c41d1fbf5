"""Daily reconciliation of payouts with WeChat's records, bill by bill.

There is no payout bill file to download (not in the sandbox either), so every payout Hongli finished on
the China date is queried by its bill number (transfer bill query, §6.1; ``gethbinfo``, §5.5) — and so is
every earlier number of a renumbered payout, which must never have been paid, and every other payout of the
same withdrawals. Differences: succeeded here but not at WeChat, paid at WeChat but not here, an amount
mismatch; and a bill WeChat paid that no withdrawal explains (:func:`unexplained_paid_bills`): no payout of
ours, a payout its withdrawal does not point at or a withdrawal not approved, or two paid bills for one
withdrawal (issue #18: concurrent approvals once had one withdrawal paid twice).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select

from app.extensions import db
from app.merchants.models import Merchant
from app.payments.reconciliation import CHINA, Difference
from app.payouts import rails
from app.payouts.models import Payout, PayoutStatus
from app.payouts.rails import PayoutOrder
from app.reviews.service import flag_for_review
from app.withdrawals.models import Withdrawal, WithdrawalStatus

# Our bill numbers (app.payouts.service.bill_number): the payout id, and the attempt after a renumbering.
_BILL_NO = re.compile(r"^HLP(\d{10})(?:N(\d+))?$")


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


@dataclass(frozen=True)
class PaidBill:
    """A bill WeChat says it paid: ``out_bill_no`` / ``mch_billno`` and its amount."""

    bill_no: str
    amount_fen: int | None


def _numbers(payout: Payout) -> set[str]:
    """Every bill number this payout has used: its current one and each it was renumbered from."""
    old = {str(h["old_bill_no"]) for h in payout.history if h.get("event") == "renumbered"}
    return old | ({payout.bill_no} if payout.bill_no else set())


def _payout_of(bill_no: str, merchant_id: int) -> Payout | None:
    """The payout of ours that used ``bill_no``, read from the number's own form, if any."""
    match = _BILL_NO.match(bill_no)
    payout = db.session.get(Payout, int(match.group(1))) if match else None
    if payout is None or payout.merchant_id != merchant_id or bill_no not in _numbers(payout):
        return None
    return payout


def unexplained_paid_bills(merchant: Merchant, paid: list[PaidBill]) -> list[Difference]:
    """Bills WeChat paid for ``merchant`` that no withdrawal explains: no payout of ours used the number,
    the payout is not the one its (approved) withdrawal points at, or one withdrawal has two paid bills."""
    differences: list[Difference] = []
    by_withdrawal: dict[int, list[PaidBill]] = defaultdict(list)
    for bill in sorted(set(paid), key=lambda b: b.bill_no):
        payout = _payout_of(bill.bill_no, merchant.id)
        withdrawal = (
            db.session.get(Withdrawal, payout.source_id)
            if payout is not None and payout.source_type == "withdrawal"
            else None
        )
        if payout is None:
            why = "no payout of ours has this bill number"
        elif payout.source_type == "pool_grant":
            # A fission-cash pool share (one group red packet; unique per grant): its own check in
            # ``ledger check`` (payouts.pool_grant_payouts_match_grants) ties it to its grant.
            why = ""
        elif withdrawal is None or withdrawal.merchant_id != merchant.id:
            why = f"payout {payout.id} carries {payout.source_type} {payout.source_id}, no withdrawal of ours"
        elif withdrawal.status is not WithdrawalStatus.APPROVED:
            why = f"payout {payout.id} carries withdrawal {withdrawal.id}, which is {withdrawal.status.value}"
        elif withdrawal.payout_id != payout.id:
            why = (
                f"payout {payout.id} carries withdrawal {withdrawal.id}, which points at payout "
                f"{withdrawal.payout_id}"
            )
        else:
            why = ""
        if why:
            differences.append(
                Difference("unexplained_payout", "payout", bill.bill_no, bill.amount_fen, None, why)
            )
        if withdrawal is not None:
            by_withdrawal[withdrawal.id].append(bill)
    for withdrawal_id, bills in sorted(by_withdrawal.items()):
        if len(bills) > 1:
            withdrawal = db.session.get(Withdrawal, withdrawal_id)
            assert withdrawal is not None
            differences.append(
                Difference(
                    "paid_twice",
                    "withdrawal",
                    str(withdrawal_id),
                    sum(b.amount_fen or 0 for b in bills),
                    withdrawal.net.fen,
                    f"{len(bills)} paid bills: {', '.join(b.bill_no for b in bills)}",
                )
            )
    return differences


def reconcile_payouts(merchant: Merchant, day: dt.date, *, flag: bool = True) -> PayoutReport:
    """Query WeChat for every payout of ``merchant`` finished on ``day`` (and the other payouts of the
    same withdrawals) and compare; then check every bill WeChat paid is explained by a withdrawal."""
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
    paid: list[PaidBill] = []
    for payout in payouts:
        assert payout.bill_no is not None
        report.payouts_checked += 1
        found = rails.query(merchant, _order(payout, payout.bill_no))
        ours = payout.amount.fen
        paid_there = found.kind == "succeeded"
        if paid_there:
            paid.append(PaidBill(payout.bill_no, found.amount_fen))
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
                paid.append(PaidBill(old, earlier.amount_fen))
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
    paid += _paid_siblings(merchant, payouts)
    report.differences += unexplained_paid_bills(merchant, paid)
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


def _paid_siblings(merchant: Merchant, payouts: Sequence[Payout]) -> list[PaidBill]:
    """What WeChat paid under the numbers of the *other* payouts of the day's withdrawals (any state):
    a second payout of one withdrawal may still be open here, or have finished on another day."""
    seen = {p.id for p in payouts}
    sources = sorted({p.source_id for p in payouts if p.source_type == "withdrawal"})
    if not sources:
        return []
    siblings = db.session.scalars(
        select(Payout)
        .where(
            Payout.merchant_id == merchant.id,
            Payout.source_type == "withdrawal",
            Payout.source_id.in_(sources),
            Payout.id.not_in(sorted(seen)),
        )
        .order_by(Payout.id)
    ).all()
    paid: list[PaidBill] = []
    for sibling in siblings:
        for number in sorted(_numbers(sibling)):
            found = rails.query(merchant, _order(sibling, number))
            if found.kind == "succeeded":
                paid.append(PaidBill(number, found.amount_fen))
    return paid


def reconcile_all_payouts(day: dt.date, slug: str | None = None) -> list[PayoutReport]:
    """Reconcile the payouts of every merchant with WeChat Pay (or just ``slug``); a suspended one too,
    since its payouts under way still finish."""
    query = select(Merchant).where(Merchant.mchid.is_not(None))
    if slug:
        query = query.where(Merchant.slug == slug)
    return [reconcile_payouts(m, day) for m in db.session.scalars(query.order_by(Merchant.id)).all()]
