"""Taking a place in a coupon stock: the one guard every issuance channel goes through.

A coupon exists once its stock's counter moved (``UPDATE … SET issued = issued + 1 WHERE issued <
the smaller of our size and WeChat's``) and its row holds our idempotency key. Its worst case is
reserved in the same transaction, either here (:func:`reserve_coupon`, one ledger entry) or in the
caller's ledger batch (a rule's reward, booked with the order). The send to WeChat is queued after commit.
Nothing here imports the rebate engine (it calls this module).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update

from app.core.db import utcnow
from app.core.errors import Conflict
from app.core.money import Money
from app.coupons.models import Channel, Coupon, CouponKind, CouponStatus, CouponStock, StockStatus
from app.extensions import db
from app.ledger.accounts import campaign_accounts
from app.ledger.models import EntryReason
from app.ledger.service import Overdraft, post_entry
from app.queue import enqueue_after_commit
from app.rebates.rules import IssueRedPacket

SEND_JOB = "jobs.coupons.send_coupon"
BUYER_LEG_KEY = "buyer-leg:"  # issue key prefix of a coupon paying a buyer's leg: buyer-leg:<order>:<spent>


class StockCannotIssue(Conflict):
    """The stock is not running, past its window, or every place in it is taken (409)."""

    code = "coupon_stock_exhausted"


@dataclass(frozen=True)
class Terms:
    """What a coupon freezes when it is issued (from its stock, or from the rule that rewards with it)."""

    face_value: Money
    min_spend: Money
    valid_until: datetime
    issuer_rate_bp: int
    buyer_rate_bp: int
    max_order: Money
    issuer_cap: Money | None
    buyer_cap: Money | None
    worst_case_cost: Money
    rule_version_id: int | None
    rule_id: str | None

    @classmethod
    def of_stock(cls, stock: CouponStock) -> Terms:
        return cls(
            face_value=stock.face_value,
            min_spend=stock.min_spend,
            valid_until=stock.valid_until,
            issuer_rate_bp=stock.issuer_rate_bp,
            buyer_rate_bp=stock.buyer_rate_bp,
            max_order=stock.max_order,
            issuer_cap=stock.issuer_cap,
            buyer_cap=stock.buyer_cap,
            worst_case_cost=stock.worst_case_cost,
            rule_version_id=stock.rule_version_id,
            rule_id=stock.rule_id,
        )


def take_place(stock_id: int, now: datetime) -> bool:
    """The guard: one more coupon of a running stock in its window, within the smaller limit."""
    db.session.flush()
    taken = db.session.execute(
        update(CouponStock)
        .where(
            CouponStock.id == stock_id,
            CouponStock.status == StockStatus.RUNNING,
            CouponStock.valid_until > now,
            CouponStock.issued < CouponStock.max_coupons,
            or_(
                CouponStock.wechat_max_coupons.is_(None), CouponStock.issued < CouponStock.wechat_max_coupons
            ),
        )
        .values(issued=CouponStock.issued + 1)
        .execution_options(synchronize_session=False)
    )
    _expire_stock(stock_id)
    return bool(taken.rowcount == 1)  # type: ignore[attr-defined]


def give_back_place(stock_id: int) -> None:
    """A coupon that never reached WeChat frees its place (a refused send)."""
    db.session.execute(
        update(CouponStock)
        .where(CouponStock.id == stock_id, CouponStock.issued > 0)
        .values(issued=CouponStock.issued - 1)
        .execution_options(synchronize_session=False)
    )
    _expire_stock(stock_id)


def _expire_stock(stock_id: int) -> None:
    loaded = db.session.identity_map.get(db.session.identity_key(CouponStock, stock_id))
    if loaded is not None:
        db.session.expire(loaded, ["issued"])


def out_request_no(mchid: str, coupon_id: int, created_at: datetime) -> str:
    """WeChat's format "商户id+日期+流水号" (§7a.3), derived from our row: the same on every retry."""
    return f"{mchid}{created_at:%Y%m%d}{coupon_id:012d}"


def _insert_coupon(
    stock: CouponStock,
    *,
    mchid: str,
    consumer_id: int,
    appid: str,
    openid: str,
    channel: Channel,
    issue_key: str,
    terms: Terms,
    now: datetime,
) -> Coupon:
    coupon = Coupon(
        merchant_id=stock.merchant_id,
        stock_id=stock.id,
        campaign_id=stock.campaign_id,
        kind=stock.kind,
        consumer_id=consumer_id,
        appid=appid,
        openid=openid,
        channel=channel,
        issue_key=issue_key,
        out_request_no=f"pending:{issue_key}"[:64],
        status=CouponStatus.RESERVED,
        face_value=terms.face_value,
        min_spend=terms.min_spend,
        valid_from=now,
        valid_until=min(terms.valid_until, stock.valid_until),
        rule_version_id=terms.rule_version_id,
        rule_id=terms.rule_id,
        issuer_rate_bp=terms.issuer_rate_bp,
        buyer_rate_bp=terms.buyer_rate_bp,
        max_order=terms.max_order,
        issuer_cap=terms.issuer_cap,
        buyer_cap=terms.buyer_cap,
        reserved=terms.worst_case_cost,
        created_at=now,
    )
    db.session.add(coupon)
    db.session.flush()
    coupon.out_request_no = out_request_no(mchid, coupon.id, now)
    if stock.kind is CouponKind.MERCHANT_COUPON:
        # MERCHANT_API mode: the code is ours, saved before anyone is offered it.
        coupon.wechat_coupon_id = f"HL{coupon.id:010d}"
    db.session.flush()
    return coupon


def reserve_coupon(
    stock: CouponStock,
    *,
    mchid: str,
    consumer_id: int,
    appid: str,
    openid: str,
    channel: Channel,
    issue_key: str,
    now: datetime | None = None,
) -> Coupon:
    """Take a place in ``stock``, save the coupon (our key fixed) and reserve its worst case; the send (a
    voucher) is queued after commit. Raises :class:`StockCannotIssue` or the ledger's ``Overdraft`` with
    nothing written (run it in a savepoint)."""
    now = now or utcnow()
    if not take_place(stock.id, now):
        raise StockCannotIssue(
            "this coupon stock cannot issue more coupons",
            details={
                "stock_id": stock.id,
                "status": stock.status.value,
                "issued": stock.issued,
                "limit": stock.limit,
                "max_coupons": stock.max_coupons,
                "wechat_max_coupons": stock.wechat_max_coupons,
            },
        )
    coupon = _insert_coupon(
        stock,
        mchid=mchid,
        consumer_id=consumer_id,
        appid=appid,
        openid=openid,
        channel=channel,
        issue_key=issue_key,
        terms=Terms.of_stock(stock),
        now=now,
    )
    accounts = campaign_accounts(stock.merchant_id, stock.campaign_id)
    post_entry(
        key=f"coupon-reserve:{coupon.id}",
        reason=EntryReason.RESERVE,
        cause_type="coupon",
        cause_id=str(coupon.id),
        lines=[(accounts.budget, -coupon.reserved), (accounts.reserved, coupon.reserved)],
        merchant_id=stock.merchant_id,
        rule_version_id=coupon.rule_version_id,
        memo=f"reserve worst case of coupon {coupon.id}",
    )
    if stock.kind is CouponKind.VOUCHER:
        enqueue_after_commit(SEND_JOB, coupon.id)
    return coupon


def _payee(merchant_id: int, consumer_id: int) -> tuple[str, str, str] | None:
    """(mchid, appid, openid) a coupon for ``consumer_id`` goes to: the openid under the app they pay in
    (the mini-program), else any of theirs; None when they have none."""
    from app.consumers.models import WeChatIdentity
    from app.merchants.models import Merchant

    merchant = db.session.get(Merchant, merchant_id)
    identities = {
        appid: openid
        for appid, openid in db.session.execute(
            select(WeChatIdentity.appid, WeChatIdentity.openid).where(
                WeChatIdentity.consumer_id == consumer_id, WeChatIdentity.merchant_id == merchant_id
            )
        )
    }
    if merchant is None or not identities:
        return None
    mp_appid = merchant.mp_appid or ""
    appid = mp_appid if mp_appid in identities else sorted(identities)[0]
    return merchant.mchid or "", appid, identities[appid]


def reserve_rule_coupon(
    *,
    merchant_id: int,
    campaign_id: int,
    rule_version_id: int,
    stock_id: int,
    grant: IssueRedPacket,
    issue_key: str,
) -> int | None:
    """A two-way rule's reward as a coupon of ``stock_id``: the place taken and the row saved, the
    reservation left to the caller's ledger batch. None when this stock cannot carry the reward (another
    campaign's, other terms, not running or full): the rule then grants nothing.
    """
    stock = db.session.get(CouponStock, stock_id)
    if (
        stock is None
        or stock.merchant_id != merchant_id
        or stock.campaign_id != campaign_id
        or stock.face_value != grant.face_value
        or stock.min_spend != grant.min_spend
    ):
        return None
    payee = _payee(merchant_id, grant.recipient_id)
    now = utcnow()
    if payee is None or not take_place(stock.id, now):
        return None
    terms = Terms(
        face_value=grant.face_value,
        min_spend=grant.min_spend,
        valid_until=grant.valid_until,
        issuer_rate_bp=grant.issuer_rate_bp,
        buyer_rate_bp=grant.buyer_rate_bp,
        max_order=grant.max_order_fen,
        issuer_cap=grant.issuer_cap_fen,
        buyer_cap=grant.buyer_cap_fen,
        worst_case_cost=grant.worst_case_cost,
        rule_version_id=rule_version_id,
        rule_id=grant.rule_id,
    )
    return _issue(stock, payee, grant.recipient_id, issue_key, terms, now).id


def reserve_leg_coupon(
    *, merchant_id: int, campaign_id: int, stock_id: int, consumer_id: int, worth: Money, issue_key: str
) -> Coupon | None:
    """A buyer's two-way leg paid as one coupon of ``stock_id`` (a rule's ``buyer_leg: coupon``): the place
    taken and the row saved with the stock's own terms, its reservation (the stock's worst case) left to
    the caller's ledger batch. None — the leg is then paid in cash — when the stock is not this campaign's,
    cannot issue, or could cost more than the leg is ``worth``, or the buyer has no WeChat identity."""
    stock = db.session.get(CouponStock, stock_id)
    if (
        stock is None
        or stock.merchant_id != merchant_id
        or stock.campaign_id != campaign_id
        or stock.worst_case_cost > worth
    ):
        return None
    payee = _payee(merchant_id, consumer_id)
    now = utcnow()
    if payee is None or not take_place(stock.id, now):
        return None
    return _issue(stock, payee, consumer_id, issue_key, Terms.of_stock(stock), now)


def _issue(
    stock: CouponStock,
    payee: tuple[str, str, str],
    consumer_id: int,
    issue_key: str,
    terms: Terms,
    now: datetime,
) -> Coupon:
    mchid, appid, openid = payee
    coupon = _insert_coupon(
        stock,
        mchid=mchid,
        consumer_id=consumer_id,
        appid=appid,
        openid=openid,
        channel=Channel.RULE,
        issue_key=issue_key,
        terms=terms,
        now=now,
    )
    if stock.kind is CouponKind.VOUCHER:
        enqueue_after_commit(SEND_JOB, coupon.id)
    return coupon


__all__ = [
    "BUYER_LEG_KEY",
    "SEND_JOB",
    "Overdraft",
    "StockCannotIssue",
    "Terms",
    "give_back_place",
    "reserve_coupon",
    "reserve_leg_coupon",
    "reserve_rule_coupon",
    "take_place",
]
