"""The dashboard's figures, for the console page and ``GET /api/console/v1/dashboard`` alike.

Every money figure is read from the ledger: balances from the accounts (``ledger check`` proves they
equal their postings), flows in the range from the postings of the merchant's journal entries. Counts
(red packets, orders) come from their rows. Each widget is at most two round trips, and a widget over
a range reads only the rows of the range: the first id of the range is found by a backward scan of the
primary key (rows are numbered in time order), so a merchant's years of history cost nothing here.

Definitions (product brief, console metrics): cost = what the campaigns booked (face values spent,
two-way legs, other rebates, used coupons) less clawbacks = the net outflow of the campaign accounts other
than funding, reservations and releases; of it, coupon cost = what used coupons booked less refunds (from
``app.dashboard.hooks``, reported by the coupons) and rebate cost = the rest; GMV driven = total less refunds of the orders that spent one of the
merchant's red packets; ROI = (GMV driven − cost) / cost; claim rate = claimed / issued (a red packet is
claimed when it lands in the buyer's wallet, which is when it is issued); redemption rate = redeemed /
issued; time to redeem = from issue to the paid order that spent it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, extract, func, literal_column, select
from sqlalchemy.orm import InstrumentedAttribute

from app.campaigns.models import Campaign
from app.campaigns.simulation import ratio, roi
from app.consumers.models import Consumer
from app.core.db import utcnow
from app.core.errors import InvalidInput
from app.core.money import Money
from app.dashboard import hooks
from app.extensions import db
from app.ledger.models import AccountKind, EntryReason, JournalEntry, LedgerAccount, Posting
from app.orders.models import Order, OrderStatus
from app.personal.models import FUNDING_ORDER_PREFIX
from app.rebates.models import RebateGrant
from app.red_packets.models import RedPacket, RedPacketStatus

CHINA_OFFSET = timedelta(hours=8)
MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 30
# Slack for the id bound: an entry numbered before a later one may carry a slightly later time (two
# transactions in flight at once); anything older than this before the range is surely before it.
_ID_SLACK = timedelta(minutes=10)
_CAMPAIGN_ACCOUNTS = (AccountKind.CAMPAIGN_BUDGET, AccountKind.CAMPAIGN_RESERVED)
_SPENDING = (EntryReason.RED_PACKET_REDEEM, EntryReason.REBATE_PENDING, EntryReason.CLAWBACK)
_PROMOTERS = ("inviter", "promoter_l1", "promoter_l2", "issuer_consumer")


@dataclass(frozen=True)
class DateRange:
    """China calendar days ``first``…``last`` (both included), as UTC instants [since, until)."""

    first: date
    last: date

    @property
    def since(self) -> datetime:
        return datetime(self.first.year, self.first.month, self.first.day, tzinfo=UTC) - CHINA_OFFSET

    @property
    def until(self) -> datetime:
        return self.since + timedelta(days=(self.last - self.first).days + 1)

    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]


def china_today(now: datetime | None = None) -> date:
    return ((now or utcnow()).astimezone(UTC) + CHINA_OFFSET).date()


def date_range(
    first: date | None = None, last: date | None = None, *, now: datetime | None = None
) -> DateRange:
    """The range asked for (default: the last 30 China days up to today); 422 when it is backwards or long."""
    last = last or china_today(now)
    first = first or last - timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if first > last:
        raise InvalidInput("the range ends before it starts", details={"fields": {"from": ["after to"]}})
    if (last - first).days >= MAX_RANGE_DAYS:
        raise InvalidInput(f"at most {MAX_RANGE_DAYS} days", details={"fields": {"from": ["range too long"]}})
    return DateRange(first, last)


def _fen(value: Any) -> int:
    return value.fen if isinstance(value, Money) else int(value or 0)


def _china_day(column: Any) -> ColumnElement[Any]:
    # The China day of a UTC timestamp, as days since the epoch: the same arithmetic on every engine.
    seconds = extract("epoch", column) + int(CHINA_OFFSET.total_seconds())
    return func.floor(seconds / 86400).cast(Integer)


def _epoch_day(day: int) -> date:
    return date(1970, 1, 1) + timedelta(days=day)


def first_id_since(
    id_column: InstrumentedAttribute[int], created: InstrumentedAttribute[datetime], since: datetime
) -> int:
    """A lower bound for the ids of rows created from ``since`` on: one backward primary-key scan that stops
    at the first row older than the range (less a slack), so it reads the range's rows, not the history."""
    bound = db.session.scalar(select(func.max(id_column)).where(created < since - _ID_SLACK))
    return int(bound or 0)


def _id_after(id_column: InstrumentedAttribute[int], bound: int) -> ColumnElement[bool]:
    # Inlined (an int, so safe): a bound parameter would let a generic plan forget that it is selective.
    return id_column > literal_column(str(int(bound)))


# ---------------------------------------------------------------- widgets


def balances(*, merchant_id: int) -> dict[str, int]:
    """Every ledger account kind of the merchant, summed over its owners (one round trip)."""
    totals = {kind.value: 0 for kind in AccountKind}
    for kind, total in db.session.execute(
        select(LedgerAccount.kind, func.coalesce(func.sum(LedgerAccount.balance), 0))
        .where(LedgerAccount.merchant_id == merchant_id)
        .group_by(LedgerAccount.kind)
    ).tuples():
        totals[kind.value] = _fen(total)
    return {
        "merchant_budget_fen": totals[AccountKind.MERCHANT_BUDGET.value],
        "merchant_rebate_fen": totals[AccountKind.MERCHANT_REBATE.value],
        "campaign_budget_fen": totals[AccountKind.CAMPAIGN_BUDGET.value],
        "campaign_reserved_fen": totals[AccountKind.CAMPAIGN_RESERVED.value],
        "consumer_pending_fen": totals[AccountKind.CONSUMER_PENDING.value],
        "consumer_available_fen": totals[AccountKind.CONSUMER_AVAILABLE.value],
        "consumer_withdrawing_fen": totals[AccountKind.CONSUMER_WITHDRAWING.value],
        # Debt is kept as a negative balance; shown as the positive amount owed.
        "consumer_debt_fen": -totals[AccountKind.CONSUMER_DEBT.value],
    }


def flows(*, merchant_id: int, span: DateRange) -> dict[str, Any]:
    """Money moved in the range, by China day, from the postings (two round trips)."""
    bound = first_id_since(JournalEntry.id, JournalEntry.created_at, span.since)
    day = _china_day(JournalEntry.created_at)
    rows = db.session.execute(
        select(day, JournalEntry.reason, LedgerAccount.kind, func.sum(Posting.amount))
        .join(Posting, Posting.entry_id == JournalEntry.id)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(
            _id_after(JournalEntry.id, bound),
            JournalEntry.merchant_id == merchant_id,
            JournalEntry.created_at >= span.since,
            JournalEntry.created_at < span.until,
        )
        .group_by(day, JournalEntry.reason, LedgerAccount.kind)
    ).tuples()
    per_day: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for epoch_day, reason, kind, amount in rows:
        fen = _fen(amount)
        bucket = per_day[_epoch_day(int(epoch_day))]
        if kind in _CAMPAIGN_ACCOUNTS and reason in _SPENDING:
            bucket["cost_fen"] -= fen
        if kind is AccountKind.CAMPAIGN_BUDGET and reason is EntryReason.BUDGET_TRANSFER:
            bucket["funded_fen"] += fen
        if kind is AccountKind.CONSUMER_PENDING and reason is EntryReason.REBATE_PENDING:
            bucket["consumer_rebates_fen"] += fen
        if kind is AccountKind.MERCHANT_REBATE:
            bucket["merchant_rebate_fen"] += fen
        if kind is AccountKind.MERCHANT_BUDGET and reason is EntryReason.FUNDING:
            bucket["deposits_fen"] += fen
        if kind is AccountKind.CONSUMER_WITHDRAWING and reason is EntryReason.PAYOUT_SUBMIT:
            bucket["payouts_fen"] -= fen
    keys = (
        "cost_fen",
        "funded_fen",
        "consumer_rebates_fen",
        "merchant_rebate_fen",
        "deposits_fen",
        "payouts_fen",
    )
    totals = {key: sum(bucket.get(key, 0) for bucket in per_day.values()) for key in keys}
    series = [{"day": d.isoformat(), **{key: per_day[d].get(key, 0) for key in keys}} for d in span.days()]
    return {"totals": totals, "series": series}


def packets_issued(*, merchant_id: int, span: DateRange) -> dict[str, Any]:
    """Red packets issued in the range, per China day and campaign (two round trips)."""
    bound = first_id_since(RedPacket.id, RedPacket.created_at, span.since)
    issued_day = _china_day(RedPacket.created_at)
    per_day: dict[date, int] = defaultdict(int)
    by_campaign: dict[int, int] = defaultdict(int)
    for epoch_day, campaign_id, number in db.session.execute(
        select(issued_day, RedPacket.campaign_id, func.count())
        .where(
            _id_after(RedPacket.id, bound),
            RedPacket.merchant_id == merchant_id,
            RedPacket.created_at >= span.since,
            RedPacket.created_at < span.until,
        )
        .group_by(issued_day, RedPacket.campaign_id)
    ).tuples():
        per_day[_epoch_day(int(epoch_day))] += number
        by_campaign[campaign_id] += number
    return {"per_day": dict(per_day), "by_campaign": dict(by_campaign)}


def packets_redeemed(*, merchant_id: int, span: DateRange) -> dict[str, Any]:
    """Red packets redeemed in the range (their order paid in it), with the GMV those orders drove net of
    refunds and the time from issue to redemption (two round trips)."""
    # A packet redeemed in the range was issued at most its validity (≤ 366 days) before it.
    bound = first_id_since(RedPacket.id, RedPacket.created_at, span.since - timedelta(days=367))
    redeemed_day = _china_day(RedPacket.redeemed_at)
    per_day: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_campaign: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    seconds = 0
    for epoch_day, campaign_id, number, gmv, waited in db.session.execute(
        select(
            redeemed_day,
            RedPacket.campaign_id,
            func.count(),
            func.coalesce(func.sum(Order.total - Order.refunded), 0),
            func.coalesce(
                func.sum(extract("epoch", RedPacket.redeemed_at) - extract("epoch", RedPacket.created_at)), 0
            ),
        )
        .join(Order, Order.id == RedPacket.order_id)
        .where(
            _id_after(RedPacket.id, bound),
            RedPacket.merchant_id == merchant_id,
            RedPacket.status == RedPacketStatus.REDEEMED,
            RedPacket.redeemed_at >= span.since,
            RedPacket.redeemed_at < span.until,
        )
        .group_by(redeemed_day, RedPacket.campaign_id)
    ).tuples():
        for bucket in (per_day[_epoch_day(int(epoch_day))], by_campaign[campaign_id]):
            bucket["redeemed"] += number
            bucket["gmv_driven_fen"] += _fen(gmv)
        seconds += int(waited or 0)
    return {
        "per_day": {d: dict(v) for d, v in per_day.items()},
        "by_campaign": {c: dict(v) for c, v in by_campaign.items()},
        "seconds_to_redeem": seconds,
    }


def funnel(*, merchant_id: int, span: DateRange) -> dict[str, Any]:
    """The issued and redeemed widgets together: counts, GMV driven, series and per campaign."""
    issued = packets_issued(merchant_id=merchant_id, span=span)
    redeemed = packets_redeemed(merchant_id=merchant_id, span=span)
    issued_total = sum(issued["per_day"].values())
    redeemed_total = sum(v["redeemed"] for v in redeemed["per_day"].values())
    by_campaign: dict[int, dict[str, int]] = defaultdict(dict)
    for cid, number in issued["by_campaign"].items():
        by_campaign[cid]["issued"] = number
    for cid, values in redeemed["by_campaign"].items():
        by_campaign[cid].update(values)
    return {
        "issued": issued_total,
        "claimed": issued_total,
        "redeemed": redeemed_total,
        "gmv_driven_fen": sum(v["gmv_driven_fen"] for v in redeemed["per_day"].values()),
        "avg_seconds_to_redeem": redeemed["seconds_to_redeem"] // redeemed_total if redeemed_total else None,
        "series": [
            {
                "day": d.isoformat(),
                "issued": issued["per_day"].get(d, 0),
                "redeemed": redeemed["per_day"].get(d, {}).get("redeemed", 0),
                "gmv_driven_fen": redeemed["per_day"].get(d, {}).get("gmv_driven_fen", 0),
            }
            for d in span.days()
        ],
        "by_campaign": dict(by_campaign),
    }


def orders_paid(*, merchant_id: int, span: DateRange) -> dict[str, int]:
    """Orders paid in the range and their totals (two round trips)."""
    bound = first_id_since(Order.id, Order.created_at, span.since - timedelta(days=1))
    count, total, refunded = db.session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(Order.total), 0),
            func.coalesce(func.sum(Order.refunded), 0),
        ).where(
            _id_after(Order.id, bound),
            Order.merchant_id == merchant_id,
            Order.status == OrderStatus.PAID,
            Order.paid_at >= span.since,
            Order.paid_at < span.until,
            # A consumer paying for a personal red packet is prepaid money, not a sale (app.personal).
            Order.out_order_no.not_like(f"{FUNDING_ORDER_PREFIX}%"),
        )
    ).one()
    return {"orders": int(count), "gmv_fen": _fen(total), "refunded_fen": _fen(refunded)}


def top_promoters(*, merchant_id: int, span: DateRange, limit: int = 10) -> list[dict[str, Any]]:
    """The consumers who earned most as inviters, promoters or packet issuers in the range (two round trips)."""
    bound = first_id_since(RebateGrant.id, RebateGrant.created_at, span.since)
    earned = func.sum(RebateGrant.amount - RebateGrant.reversed)
    rows = db.session.execute(
        select(RebateGrant.consumer_id, Consumer.nickname, earned, func.count())
        .join(Consumer, Consumer.id == RebateGrant.consumer_id)
        .where(
            _id_after(RebateGrant.id, bound),
            RebateGrant.merchant_id == merchant_id,
            RebateGrant.beneficiary.in_(_PROMOTERS),
            RebateGrant.created_at >= span.since,
            RebateGrant.created_at < span.until,
        )
        .group_by(RebateGrant.consumer_id, Consumer.nickname)
        .order_by(earned.desc(), RebateGrant.consumer_id)
        .limit(limit)
    ).tuples()
    return [
        {"consumer_id": cid, "nickname": nickname or "", "earned_fen": _fen(amount), "grants": number}
        for cid, nickname, amount, number in rows
    ]


def campaign_names(*, merchant_id: int) -> dict[int, dict[str, str]]:
    return {
        cid: {"name": name, "status": status.value}
        for cid, name, status in db.session.execute(
            select(Campaign.id, Campaign.name, Campaign.status).where(Campaign.merchant_id == merchant_id)
        ).tuples()
    }


def dashboard(*, merchant_id: int, span: DateRange) -> dict[str, Any]:
    """Every widget of the dashboard over ``span``, with the rates and ROI derived from them."""
    money = balances(merchant_id=merchant_id)
    moved = flows(merchant_id=merchant_id, span=span)
    packets = funnel(merchant_id=merchant_id, span=span)
    paid = orders_paid(merchant_id=merchant_id, span=span)
    coupon_cost = hooks.coupon_cost_fen(merchant_id=merchant_id, since=span.since, until=span.until)
    # A used coupon is paid from its campaign's accounts like a spent red packet, so the campaigns' cost
    # already holds it: the coupons' part is reported beside the rebates' rest, never added twice.
    total_cost = moved["totals"]["cost_fen"]
    cost = total_cost - (coupon_cost or 0)
    gmv = packets["gmv_driven_fen"]
    days = len(span.days())
    daily_cost = total_cost // days
    names = campaign_names(merchant_id=merchant_id)
    return {
        "range": {"from": span.first.isoformat(), "to": span.last.isoformat(), "days": days},
        "balances": money,
        "flows": moved,
        "orders": paid,
        "funnel": {
            "issued": packets["issued"],
            "claimed": packets["claimed"],
            "redeemed": packets["redeemed"],
            "gmv_driven_fen": gmv,
            "cost_fen": total_cost,
            "roi": roi(Money(gmv), Money(total_cost)),
            "series": packets["series"],
        },
        "gmv_driven_fen": gmv,
        "rebate_cost_fen": cost,
        "coupon_cost_fen": coupon_cost,
        "cost_fen": total_cost,
        "roi": roi(Money(gmv), Money(total_cost)),
        "claim_rate": ratio(packets["claimed"], packets["issued"]),
        "redemption_rate": ratio(packets["redeemed"], packets["issued"]),
        "avg_seconds_to_redeem": packets["avg_seconds_to_redeem"],
        "budget_burn": {
            "cost_fen": total_cost,
            "per_day_fen": daily_cost,
            "left_fen": money["campaign_budget_fen"] + money["campaign_reserved_fen"],
            "days_left": (money["campaign_budget_fen"] + money["campaign_reserved_fen"]) // daily_cost
            if daily_cost > 0
            else None,
        },
        "campaigns": [
            {"id": cid, **names.get(cid, {"name": "", "status": ""}), **values}
            for cid, values in sorted(packets["by_campaign"].items())
        ],
        "top_promoters": top_promoters(merchant_id=merchant_id, span=span),
    }
