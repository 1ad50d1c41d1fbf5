"""Coupon stocks and issuance: one interface, an adapter per WeChat Pay coupon product.

* :class:`Adapter` is what a product must do: create a stock at WeChat, change its state, deliver a
  reserved coupon. :class:`VoucherAdapter` (代金券, favor: the default) and :class:`MerchantCouponAdapter`
  (商家券, busifavor: our own codes, offered through the mini-program plugin) implement it; product coupons
  (商品券) would be a third, registered in ``ADAPTERS``.
* Capability: a merchant's account has a product until WeChat answers ``NO_AUTH``; that answer switches it
  off for the merchant with its reason (:class:`CapabilityOff`), nothing else does.
* Every issuance channel (follow, after payment, a push to a segment, a rule's reward, staff) goes through
  :func:`app.coupons.issuance.reserve_coupon`: the stock's counter and the campaign budget decide.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, Protocol

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from app.audit.service import Actor
from app.behaviour.models import BehaviourEvent
from app.campaigns.models import Campaign, RuleVersion
from app.consumers.models import AppKind, WeChatIdentity
from app.core.db import utcnow
from app.core.errors import Conflict, DomainError, InvalidInput, NotFound
from app.core.guards import guarded_update
from app.core.money import Money
from app.core.refusals import forget_refusal, refused
from app.coupons.issuance import StockCannotIssue, give_back_place, reserve_coupon
from app.coupons.models import (
    COUPON_TRANSITIONS,
    STOCK_TRANSITIONS,
    Channel,
    Coupon,
    CouponCapability,
    CouponKind,
    CouponStatus,
    CouponStock,
    StockStatus,
)
from app.extensions import db
from app.gateway.clients import pay_client
from app.gateway.errors import UpstreamBusy, UpstreamError
from app.ledger.accounts import campaign_accounts
from app.ledger.models import EntryReason
from app.ledger.service import Overdraft, post_entry
from app.merchants.models import Merchant
from app.merchants.service import merchant_secrets
from app.orders.models import Order, OrderStatus
from app.rebates.ruledoc import TwoWayRule, stored_rules
from app.rebates.rules import worst_case_cost
from wechat.coupons import CouponsClient, PluginCoupon, h5_send_url, no_auth, send_coupon_params
from wechat.errors import WeChatError

logger = logging.getLogger("hongli.coupons")
CHINA = timezone(timedelta(hours=8))
MAX_WINDOW_DAYS = 90  # a voucher stock's window (§7a.1)


class CapabilityOff(DomainError):
    """The merchant's WeChat Pay account does not have this coupon product (WeChat said so)."""

    status: ClassVar[int] = 409
    code: ClassVar[str] = "coupon_capability_off"


class BudgetExhausted(Conflict):
    code: ClassVar[str] = "coupon_budget_exhausted"


# ---------------------------------------------------------------- capability


def capability(merchant_id: int, kind: CouponKind) -> CouponCapability | None:
    return db.session.scalar(
        select(CouponCapability).where(
            CouponCapability.merchant_id == merchant_id, CouponCapability.kind == kind
        )
    )


def capabilities(merchant_id: int) -> list[dict[str, Any]]:
    """Each product with what WeChat last said; ``enabled`` None when WeChat was never asked."""
    out = []
    for kind in CouponKind:
        found = capability(merchant_id, kind)
        out.append(
            {
                "kind": kind.value,
                "enabled": None if found is None else found.enabled,
                "reason": None if found is None else found.reason,
                "wechat_code": None if found is None else found.wechat_code,
                "detected_at": None if found is None else found.detected_at,
            }
        )
    return out


def _record_capability(
    merchant_id: int, kind: CouponKind, *, enabled: bool, reason: str | None, code: str | None
) -> None:
    found = capability(merchant_id, kind)
    if found is None:
        found = CouponCapability(merchant_id=merchant_id, kind=kind, enabled=enabled, details={})
        db.session.add(found)
    if found.enabled and enabled and found.reason is None:
        return  # nothing new: no write on every successful call
    found.enabled, found.reason, found.wechat_code, found.detected_at = enabled, reason, code, utcnow()


def require_capability(merchant_id: int, kind: CouponKind, now: datetime | None = None) -> None:
    """Refuse (409 ``coupon_capability_off``) while WeChat's refusal of the product stands: less than
    a week old (app.core.refusals) and not asked again by staff (:func:`ask_capability_again`). After that the next
    call asks WeChat, whose answer decides again."""
    found = capability(merchant_id, kind)
    if refused(found, now):
        assert found is not None
        raise CapabilityOff(
            f"this merchant's WeChat Pay account has no {kind.value.replace('_', ' ')}s: {found.reason}",
            details={
                "kind": kind.value,
                "reason": found.reason,
                "wechat_code": found.wechat_code,
                "detected_at": found.detected_at.isoformat(),
            },
        )


def coupon_kind(name: str) -> CouponKind:
    """The coupon product a path names (404 for any other)."""
    if name not in {kind.value for kind in CouponKind}:
        raise NotFound("no such coupon product", details={"kind": name[:40]})
    return CouponKind(name)


def ask_capability_again(merchant_id: int, kind: CouponKind, *, actor: Actor) -> None:
    """Staff say the product is open now: the next call asks WeChat (audited; 409 ``capability_not_off``
    when WeChat has not refused it)."""
    forget_refusal(
        CouponCapability,
        capability(merchant_id, kind),
        product=kind.value,
        merchant_id=merchant_id,
        actor=actor,
        action="coupons.capability.ask_again",
        target_type="coupon_capability",
    )


_NO_AUTH_REASON = {
    CouponKind.VOUCHER: "WeChat Pay answered NO_AUTH: vouchers (代金券) are not enabled for this account",
    CouponKind.MERCHANT_COUPON: (
        "WeChat Pay answered NO_AUTH: merchant coupons (商家券) are not enabled for this account "
        "(no new merchants since 2025-12-15); use vouchers"
    ),
}


def _switch_off(merchant_id: int, kind: CouponKind, exc: WeChatError) -> CapabilityOff:
    _record_capability(merchant_id, kind, enabled=False, reason=_NO_AUTH_REASON[kind], code=exc.code)
    return CapabilityOff(
        _NO_AUTH_REASON[kind],
        details={"kind": kind.value, "reason": _NO_AUTH_REASON[kind], "wechat_code": exc.code},
    )


# ---------------------------------------------------------------- adapters


def coupon_notify_url(merchant: Merchant) -> str:
    base = current_app.extensions["hongli.settings"].web.public_base_url.rstrip("/")
    return f"{base}/wechat/{merchant.slug}/coupons/notify"


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(CHINA).isoformat(timespec="seconds")


class Adapter(Protocol):
    kind: CouponKind

    def create(self, client: CouponsClient, merchant: Merchant, stock: CouponStock) -> StockStatus:
        """Create ``stock`` at WeChat (idempotent on its ``out_request_no``); the status it is then in."""

    def act(self, client: CouponsClient, stock: CouponStock, to: StockStatus) -> None:
        """Move the WeChat stock to ``to``."""

    def deliver(
        self, client: CouponsClient, merchant: Merchant, stock: CouponStock, coupon: Coupon
    ) -> str | None:
        """Put a reserved coupon in the user's card pack; WeChat's coupon id, or None when the user claims it
        later (the plugin / H5 / JSAPI)."""


class VoucherAdapter:
    """代金券: our server sends it to an openid; WeChat Pay applies it at checkout (§7a)."""

    kind = CouponKind.VOUCHER

    def create(self, client: CouponsClient, merchant: Merchant, stock: CouponStock) -> StockStatus:
        answer = client.create_voucher_stock(
            out_request_no=stock.out_request_no,
            stock={
                "stock_name": stock.name,
                "comment": f"hongli campaign {stock.campaign_id}",
                "belong_merchant": merchant.mchid,
                "available_begin_time": _rfc3339(stock.valid_from),
                "available_end_time": _rfc3339(stock.valid_until),
                "stock_use_rule": {
                    "max_coupons": stock.max_coupons,
                    "max_amount": stock.face_value.fen * stock.max_coupons,
                    "max_coupons_per_user": stock.max_coupons,
                    "natural_person_limit": False,
                    "prevent_api_abuse": False,
                },
                "coupon_use_rule": {
                    "fixed_normal_coupon": {
                        "coupon_amount": stock.face_value.fen,
                        "transaction_minimum": stock.min_spend.fen,
                    },
                    "available_merchants": [merchant.mchid],
                },
                "no_cash": stock.no_cash,
                "stock_type": "NORMAL",
            },
        )
        stock.wechat_stock_id = str(answer["stock_id"])
        client.set_voucher_callback(coupon_notify_url(merchant))
        return StockStatus.CREATED

    def act(self, client: CouponsClient, stock: CouponStock, to: StockStatus) -> None:
        assert stock.wechat_stock_id is not None
        action = {
            StockStatus.RUNNING: "restart" if stock.status is StockStatus.PAUSED else "start",
            StockStatus.PAUSED: "pause",
            StockStatus.STOPPED: "stop",
        }[to]
        client.voucher_stock_action(stock.wechat_stock_id, action)

    def deliver(
        self, client: CouponsClient, merchant: Merchant, stock: CouponStock, coupon: Coupon
    ) -> str | None:
        assert stock.wechat_stock_id is not None
        return client.send_voucher(
            stock_id=stock.wechat_stock_id,
            openid=coupon.openid,
            out_request_no=coupon.out_request_no,
            appid=coupon.appid,
        )


class MerchantCouponAdapter:
    """商家券: our codes (MERCHANT_API mode); the user claims one through the plugin, H5 or JSAPI, WeChat
    tells us (``COUPON.SEND``); we decide its use in our pricing and report it (``coupons/use``)."""

    kind = CouponKind.MERCHANT_COUPON

    def create(self, client: CouponsClient, merchant: Merchant, stock: CouponStock) -> StockStatus:
        answer = client.create_merchant_coupon_stock(
            out_request_no=stock.out_request_no,
            stock={
                "stock_name": stock.name,
                "belong_merchant": merchant.mchid,
                "comment": f"hongli campaign {stock.campaign_id}",
                "goods_name": stock.name,
                "stock_type": "NORMAL",
                "coupon_use_rule": {
                    "coupon_available_time": {
                        "available_begin_time": _rfc3339(stock.valid_from),
                        "available_end_time": _rfc3339(stock.valid_until),
                    },
                    "fixed_normal_coupon": {
                        "discount_amount": stock.face_value.fen,
                        "transaction_minimum": stock.min_spend.fen,
                    },
                    "use_method": "MINI_PROGRAMS",
                    "mini_programs_appid": merchant.mp_appid,
                    "mini_programs_path": "pages/index/index",
                },
                "stock_send_rule": {
                    "max_coupons": stock.max_coupons,
                    "max_coupons_per_user": stock.max_coupons,
                },
                "coupon_code_mode": "MERCHANT_API",
            },
        )
        stock.wechat_stock_id = str(answer["stock_id"])
        client.set_merchant_coupon_callback(coupon_notify_url(merchant))
        return StockStatus.RUNNING  # a merchant-coupon stock issues once created

    def act(self, client: CouponsClient, stock: CouponStock, to: StockStatus) -> None:
        # No WeChat call pauses a merchant-coupon stock: our codes are the only way in, so ours decides.
        return None

    def deliver(
        self, client: CouponsClient, merchant: Merchant, stock: CouponStock, coupon: Coupon
    ) -> str | None:
        return None  # claimed by the user (plugin parameters); WeChat says so with COUPON.SEND


ADAPTERS: dict[CouponKind, Adapter] = {
    CouponKind.VOUCHER: VoucherAdapter(),
    CouponKind.MERCHANT_COUPON: MerchantCouponAdapter(),
}


def coupons_client(merchant: Merchant) -> CouponsClient:
    return CouponsClient(pay_client(merchant))


# ---------------------------------------------------------------- stocks


def _merchant(merchant_id: int) -> Merchant:
    merchant = db.session.get(Merchant, merchant_id)
    if merchant is None:
        raise NotFound("unknown merchant")
    return merchant


def get_stock(*, merchant_id: int, stock_id: int) -> CouponStock:
    stock = db.session.get(CouponStock, stock_id)
    if stock is None or stock.merchant_id != merchant_id:
        raise NotFound("unknown coupon stock", details={"stock_id": stock_id})
    return stock


def list_stocks(*, merchant_id: int) -> list[CouponStock]:
    return list(
        db.session.scalars(
            select(CouponStock).where(CouponStock.merchant_id == merchant_id).order_by(CouponStock.id)
        )
    )


def _two_way(campaign: Campaign, rule_id: str) -> tuple[RuleVersion, TwoWayRule]:
    version = (
        db.session.get(RuleVersion, campaign.current_version_id) if campaign.current_version_id else None
    )
    rule = stored_rules(version.document).get(rule_id) if version is not None else None
    if version is None or not isinstance(rule, TwoWayRule):
        raise InvalidInput(
            "no two-way rule of that id in the campaign's current rules",
            details={"fields": {"rule_id": ["not a two-way rule of this campaign"]}},
        )
    return version, rule


def create_stock(
    *,
    merchant_id: int,
    campaign_id: int,
    kind: CouponKind,
    name: str,
    face_value: Money | None,
    min_spend: Money | None,
    valid_from: datetime,
    valid_until: datetime,
    max_coupons: int,
    channels: list[str],
    no_cash: bool = False,
    rule_id: str | None = None,
    scope: list[str] | None = None,
    activate: bool = True,
    task: dict[str, Any] | None = None,
) -> CouponStock:
    """Save a stock (its ``out_request_no`` committed first), create it at WeChat, and start it.

    With ``rule_id`` (a two-way rule of the campaign) its coupons freeze that rule's face value, minimum
    and rates, so using one books the two legs. A ``NO_AUTH`` answer switches the product off for the
    merchant (409 ``coupon_capability_off``); an unknown outcome leaves the stock a draft to submit again.
    """
    merchant = _merchant(merchant_id)
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or campaign.merchant_id != merchant_id:
        raise NotFound("unknown campaign", details={"campaign_id": campaign_id})
    require_capability(merchant_id, kind)
    if not merchant.mchid:
        raise Conflict("this merchant has no WeChat Pay account", details={"kind": kind.value})
    if valid_until <= valid_from or valid_until - valid_from > timedelta(days=MAX_WINDOW_DAYS):
        raise InvalidInput(
            f"a stock's window is at most {MAX_WINDOW_DAYS} days",
            details={"fields": {"valid_until": [f"after valid_from, within {MAX_WINDOW_DAYS} days"]}},
        )
    rates: dict[str, Any] = {"issuer_rate_bp": 0, "buyer_rate_bp": 0, "issuer_cap": None, "buyer_cap": None}
    version_id = campaign.current_version_id
    if rule_id is not None:
        version, rule = _two_way(campaign, rule_id)
        version_id = version.id
        face_value, min_spend = face_value or rule.packet_value_fen, min_spend or rule.packet_min_spend_fen
        if face_value != rule.packet_value_fen or min_spend != rule.packet_min_spend_fen:
            raise InvalidInput(
                "a rule's coupon has the rule's face value and minimum spend",
                details={"fields": {"face_value_fen": [f"{rule.packet_value_fen.fen} (the rule's)"]}},
            )
        rates = {
            "issuer_rate_bp": rule.issuer_rate_bp,
            "buyer_rate_bp": rule.buyer_rate_bp,
            "issuer_cap": rule.issuer_cap_fen,
            "buyer_cap": rule.buyer_cap_fen,
        }
        max_order = rule.max_order_fen
    if face_value is None or min_spend is None or face_value.fen < 1:
        raise InvalidInput("face_value_fen is required", details={"fields": {"face_value_fen": ["required"]}})
    if rule_id is None:
        max_order = min_spend
    if min_spend.fen and min_spend <= face_value:
        raise InvalidInput(
            "the minimum spend must exceed the face value (at least 1 fen is paid)",
            details={"fields": {"min_spend_fen": ["must exceed face_value_fen"]}},
        )
    stock = CouponStock(
        merchant_id=merchant_id,
        campaign_id=campaign_id,
        kind=kind,
        name=name,
        channels=sorted(set(channels)),
        face_value=face_value,
        min_spend=min_spend,
        valid_from=valid_from,
        valid_until=valid_until,
        max_coupons=max_coupons,
        no_cash=no_cash,
        out_request_no="pending",
        rule_version_id=version_id,
        rule_id=rule_id or "coupon",
        max_order=max_order,
        worst_case_cost=worst_case_cost(
            face_value,
            max_order,
            rates["issuer_rate_bp"],
            rates["buyer_rate_bp"],
            rates["issuer_cap"],
            rates["buyer_cap"],
        ),
        scope=scope or [],
        task=task,
        status=StockStatus.DRAFT,
        **rates,
    )
    db.session.add(stock)
    db.session.flush()
    stock.out_request_no = f"{merchant.mchid}{utcnow():%Y%m%d}S{stock.id:010d}"
    # The unit of work boundary: the key is durable before WeChat ever sees it.
    db.session.commit()
    return submit_stock(merchant_id=merchant_id, stock_id=stock.id, activate=activate)


def submit_stock(*, merchant_id: int, stock_id: int, activate: bool = True) -> CouponStock:
    """(Re)send a draft stock to WeChat with its saved ``out_request_no``; start it if asked."""
    stock = get_stock(merchant_id=merchant_id, stock_id=stock_id)
    merchant = _merchant(merchant_id)
    adapter = ADAPTERS[stock.kind]
    if stock.status is StockStatus.DRAFT:
        client = coupons_client(merchant)
        try:
            status = adapter.create(client, merchant, stock)
        except WeChatError as exc:
            raise _refused(merchant_id, stock, exc) from None
        _record_capability(merchant_id, stock.kind, enabled=True, reason=None, code=None)
        stock.status, stock.last_error = status, None
        db.session.commit()
    if activate and stock.status is StockStatus.CREATED:
        return change_stock(merchant_id=merchant_id, stock_id=stock.id, to=StockStatus.RUNNING)
    return stock


def _refused(merchant_id: int, stock: CouponStock, exc: WeChatError) -> DomainError:
    stock.last_error = f"{exc.code}: {exc.message}"[:255]
    if no_auth(exc):
        stock.status = StockStatus.STOPPED
        error: DomainError = _switch_off(merchant_id, stock.kind, exc)
    elif exc.final:
        stock.status = StockStatus.STOPPED
        error = UpstreamError("WeChat refused the coupon stock", details={"wechat_code": exc.code})
    else:
        error = UpstreamBusy(
            "WeChat did not answer; submit the stock again", details={"wechat_code": exc.code}
        )
    db.session.commit()  # the refusal (and a capability switched off) is recorded whatever the caller does
    return error


def change_stock(*, merchant_id: int, stock_id: int, to: StockStatus) -> CouponStock:
    """Start, pause, restart or stop a stock, at WeChat first, then here (allowed transitions only)."""
    stock = get_stock(merchant_id=merchant_id, stock_id=stock_id)
    if to not in STOCK_TRANSITIONS[stock.status] or stock.status is StockStatus.DRAFT:
        raise Conflict(
            f"a {stock.status.value} stock cannot become {to.value}", details={"status": stock.status.value}
        )
    merchant = _merchant(merchant_id)
    try:
        ADAPTERS[stock.kind].act(coupons_client(merchant), stock, to)
    except WeChatError as exc:
        raise _refused(merchant_id, stock, exc) from None
    if not guarded_update(CouponStock, stock.id, CouponStock.status == stock.status, status=to):
        raise Conflict("the stock changed meanwhile; try again", details={"status": stock.status.value})
    db.session.commit()
    db.session.refresh(stock)
    return stock


# ---------------------------------------------------------------- issuance


def _openid(merchant_id: int, consumer_id: int, kind: AppKind | None = None) -> tuple[str, str]:
    query = select(WeChatIdentity.appid, WeChatIdentity.openid, WeChatIdentity.app_kind).where(
        WeChatIdentity.merchant_id == merchant_id, WeChatIdentity.consumer_id == consumer_id
    )
    rows = db.session.execute(query.order_by(WeChatIdentity.id)).all()
    for appid, openid, app_kind in rows:
        if kind is None or app_kind is kind:
            return appid, openid
    raise Conflict(
        "this consumer has no WeChat identity to send a coupon to", details={"consumer_id": consumer_id}
    )


def issue_coupon(
    *,
    merchant_id: int,
    stock_id: int,
    consumer_id: int,
    channel: Channel,
    issue_key: str,
    appid: str | None = None,
    openid: str | None = None,
) -> Coupon:
    """Issue one coupon of a stock to a consumer (idempotent on ``issue_key``: a replay returns the first).

    Refuses with 409 when the stock cannot issue (``coupon_stock_exhausted``: not running, out of its
    window, or our size or WeChat's — the smaller — reached) or the budget cannot cover its worst case
    (``coupon_budget_exhausted``), writing nothing. The voucher send is queued after commit.
    """
    existing = _by_issue_key(merchant_id, issue_key)
    if existing is not None:
        return existing
    stock = get_stock(merchant_id=merchant_id, stock_id=stock_id)
    require_capability(merchant_id, stock.kind)
    merchant = _merchant(merchant_id)
    if appid is None or openid is None:
        appid, openid = _openid(merchant_id, consumer_id)
    try:
        with db.session.begin_nested():
            return reserve_coupon(
                stock,
                mchid=merchant.mchid or "",
                consumer_id=consumer_id,
                appid=appid,
                openid=openid,
                channel=channel,
                issue_key=issue_key,
            )
    except Overdraft:
        raise BudgetExhausted(
            "the campaign's budget cannot cover this coupon's worst case",
            details={"stock_id": stock_id, "worst_case_cost_fen": stock.worst_case_cost.fen},
        ) from None
    except IntegrityError:
        # The same issue key, issued concurrently: that one stands.
        found = _by_issue_key(merchant_id, issue_key)
        if found is None:
            raise
        return found


def _by_issue_key(merchant_id: int, issue_key: str) -> Coupon | None:
    return db.session.scalar(
        select(Coupon).where(Coupon.merchant_id == merchant_id, Coupon.issue_key == issue_key)
    )


def issue_on_follow(merchant_id: int, consumer_id: int, openid: str, scene: str | None) -> Coupon | None:
    """A new follower's coupon: the first running voucher stock with the ``follow`` channel that can issue
    one (one per follower and stock). None when none can (every reason is logged, nothing is written)."""
    merchant = _merchant(merchant_id)
    stocks = db.session.scalars(
        select(CouponStock)
        .where(
            CouponStock.merchant_id == merchant_id,
            CouponStock.kind == CouponKind.VOUCHER,
            CouponStock.status == StockStatus.RUNNING,
        )
        .order_by(CouponStock.id)
    ).all()
    for stock in stocks:
        if Channel.FOLLOW.value not in stock.channels:
            continue
        try:
            return issue_coupon(
                merchant_id=merchant_id,
                stock_id=stock.id,
                consumer_id=consumer_id,
                channel=Channel.FOLLOW,
                issue_key=f"follow:{stock.id}:{consumer_id}",
                appid=merchant.oa_appid or merchant.mp_appid,
                openid=openid,
            )
        except (StockCannotIssue, BudgetExhausted, CapabilityOff) as exc:
            logger.info(
                "follow of consumer %s (scene %s): stock %s: %s", consumer_id, scene, stock.id, exc.message
            )
    return None


def on_follower_subscribed(event: Any) -> None:
    """``follower.subscribed`` (emitted in the message server's transaction): a first follow earns a coupon."""
    payload = event.payload
    if not payload.get("first_follow"):
        return
    issue_on_follow(
        event.merchant_id, int(payload["consumer_id"]), str(payload["openid"]), payload.get("scene_id")
    )


def issue_after_payment(*, merchant_id: int, consumer_id: int, order_id: int) -> Coupon:
    """ "A coupon for this order?": one voucher of a running ``after_payment`` stock for a paid order of
    ``consumer_id`` (one per order and stock)."""
    order = db.session.get(Order, order_id)
    if order is None or order.merchant_id != merchant_id or order.consumer_id != consumer_id:
        raise NotFound("unknown order", details={"order_id": order_id})
    if order.status is not OrderStatus.PAID:
        raise Conflict("only a paid order earns a coupon", details={"status": order.status.value})
    stocks = [
        stock
        for stock in list_stocks(merchant_id=merchant_id)
        if Channel.AFTER_PAYMENT.value in stock.channels and stock.status is StockStatus.RUNNING
    ]
    return _first_that_issues(
        stocks,
        merchant_id=merchant_id,
        consumer_id=consumer_id,
        channel=Channel.AFTER_PAYMENT,
        key=lambda stock: f"after-payment:{stock.id}:{order_id}",
        none=NotFound("no coupon is offered after payment now"),
    )


def _first_that_issues(
    stocks: list[CouponStock],
    *,
    merchant_id: int,
    consumer_id: int,
    channel: Channel,
    key: Callable[[CouponStock], str],
    none: DomainError,
) -> Coupon:
    """One coupon of the first stock that can issue it; when none can, the last refusal (or ``none``)."""
    last = none
    for stock in stocks:
        try:
            return issue_coupon(
                merchant_id=merchant_id,
                stock_id=stock.id,
                consumer_id=consumer_id,
                channel=channel,
                issue_key=key(stock),
            )
        except (StockCannotIssue, BudgetExhausted) as exc:
            last = exc
    raise last


class NotANewCustomer(Conflict):
    """A first-visit coupon for someone who has paid at this merchant before (409)."""

    code = "not_a_new_customer"


class TaskNotDone(Conflict):
    """A task coupon claimed before the task is done (409, with the progress)."""

    code = "task_not_done"


def _running_vouchers(merchant_id: int, channel: Channel) -> list[CouponStock]:
    return [
        stock
        for stock in db.session.scalars(
            select(CouponStock)
            .where(
                CouponStock.merchant_id == merchant_id,
                CouponStock.kind == CouponKind.VOUCHER,
                CouponStock.status == StockStatus.RUNNING,
            )
            .order_by(CouponStock.id)
        )
        if channel.value in stock.channels
    ]


def issue_on_first_visit(*, merchant_id: int, consumer_id: int) -> Coupon:
    """A new customer's welcome (the mini-program asks on its first visit): one voucher of the first running
    ``first_visit`` stock that can issue, for a consumer who has never paid at this merchant. Once per
    consumer and stock: asking again returns the same coupon."""
    stocks = _running_vouchers(merchant_id, Channel.FIRST_VISIT)
    for stock in stocks:
        earlier = _by_issue_key(merchant_id, f"first-visit:{stock.id}:{consumer_id}")
        if earlier is not None:
            return earlier
    if not stocks:
        raise NotFound("no coupon is offered on a first visit now")
    if db.session.scalar(
        select(Order.id)
        .where(Order.merchant_id == merchant_id, Order.consumer_id == consumer_id, Order.paid_at.is_not(None))
        .limit(1)
    ):
        raise NotANewCustomer("first-visit coupons are for new customers")
    return _first_that_issues(
        stocks,
        merchant_id=merchant_id,
        consumer_id=consumer_id,
        channel=Channel.FIRST_VISIT,
        key=lambda stock: f"first-visit:{stock.id}:{consumer_id}",
        none=NotFound("no coupon is offered on a first visit now"),
    )


def _task_done(stock: CouponStock, consumer_id: int, now: datetime) -> int:
    """How many of the task's behaviour events the consumer recorded in its window (our events, attributed
    to the signed-in consumer only)."""
    task = stock.task or {}
    return int(
        db.session.scalar(
            select(func.count(BehaviourEvent.id)).where(
                BehaviourEvent.merchant_id == stock.merchant_id,
                BehaviourEvent.consumer_id == consumer_id,
                BehaviourEvent.kind == task.get("kind"),
                BehaviourEvent.occurred_at >= now - timedelta(days=int(task.get("within_days", 1))),
            )
        )
        or 0
    )


def task_progress(*, merchant_id: int, consumer_id: int) -> list[dict[str, Any]]:
    """The running task stocks and how far the consumer is with each."""
    now = utcnow()
    return [
        {
            "stock_id": stock.id,
            "name": stock.name,
            "face_value_fen": stock.face_value,
            **(stock.task or {}),
            "done": _task_done(stock, consumer_id, now),
            "claimed": _by_issue_key(merchant_id, f"task:{stock.id}:{consumer_id}") is not None,
        }
        for stock in _running_vouchers(merchant_id, Channel.TASK)
        if stock.task
    ]


def claim_task_coupon(*, merchant_id: int, consumer_id: int, stock_id: int) -> Coupon:
    """A task's coupon, once the consumer's own behaviour events show the task done (once per consumer)."""
    stock = db.session.get(CouponStock, stock_id)
    if (
        stock is None
        or stock.merchant_id != merchant_id
        or Channel.TASK.value not in stock.channels
        or not stock.task
    ):
        raise NotFound("no such task", details={"stock_id": stock_id})
    earlier = _by_issue_key(merchant_id, f"task:{stock.id}:{consumer_id}")
    if earlier is not None:
        return earlier
    done, needed = _task_done(stock, consumer_id, utcnow()), int(stock.task["count"])
    if done < needed:
        raise TaskNotDone("the task is not done yet", details={"done": done, "count": needed, **stock.task})
    return issue_coupon(
        merchant_id=merchant_id,
        stock_id=stock.id,
        consumer_id=consumer_id,
        channel=Channel.TASK,
        issue_key=f"task:{stock.id}:{consumer_id}",
    )


def push_to_segment(
    *, merchant_id: int, stock_id: int, min_paid_fen: int, days: int, limit: int = 1000
) -> dict[str, Any]:
    """A campaign push: one coupon to each consumer who paid at least ``min_paid_fen`` in the last
    ``days`` days, until the stock or the budget says no. Idempotent per consumer and stock."""
    since = utcnow() - timedelta(days=days)
    paid = func.sum(Order.paid_amount)
    segment = db.session.scalars(
        select(Order.consumer_id)
        .where(Order.merchant_id == merchant_id, Order.status == OrderStatus.PAID, Order.paid_at >= since)
        .group_by(Order.consumer_id)
        .having(paid >= Money(min_paid_fen))
        .order_by(Order.consumer_id)
        .limit(limit)
    ).all()
    issued, refused = 0, {}
    for consumer_id in segment:
        try:
            issue_coupon(
                merchant_id=merchant_id,
                stock_id=stock_id,
                consumer_id=consumer_id,
                channel=Channel.PUSH,
                issue_key=f"push:{stock_id}:{consumer_id}",
            )
            issued += 1
        except DomainError as exc:
            refused[str(consumer_id)] = exc.code
    return {"segment": len(segment), "issued": issued, "refused": refused}


# ---------------------------------------------------------------- delivery (the send job)


def deliver_coupon(coupon_id: int) -> CouponStatus | None:
    """Send a reserved voucher with its saved ``out_request_no`` (the same on every retry).

    Sent → ``sent``. Refused for good → ``failed``, its place and reservation given back; WeChat's stock
    used up (``NOT_ENOUGH``) also records WeChat's size, so the smaller limit holds from now on. An unknown
    outcome keeps it reserved and raises (the job is retried, then the sweep re-queues it).
    """
    coupon = db.session.get(Coupon, coupon_id)
    if coupon is None or coupon.status is not CouponStatus.RESERVED:
        return None if coupon is None else coupon.status
    stock = db.session.get(CouponStock, coupon.stock_id)
    merchant = db.session.get(Merchant, coupon.merchant_id)
    assert stock is not None and merchant is not None
    adapter = ADAPTERS[stock.kind]
    try:
        wechat_id = adapter.deliver(coupons_client(merchant), merchant, stock, coupon)
    except WeChatError as exc:
        coupon.attempts += 1
        coupon.last_error = f"{exc.code}: {exc.message}"[:255]
        stock_used_up = (exc.code or "").upper().replace("_", "") == "NOTENOUGH"
        if no_auth(exc):
            _switch_off(coupon.merchant_id, stock.kind, exc)
        if exc.final or stock_used_up or no_auth(exc):
            ended = end_coupon(
                coupon, CouponStatus.FAILED, key=f"coupon-failed:{coupon.id}", give_back=not stock_used_up
            )
            if ended and stock_used_up:
                _wechat_stock_used_up(stock)
            db.session.commit()
            return CouponStatus.FAILED
        db.session.commit()
        raise
    if wechat_id is None:
        return coupon.status
    if guarded_update(
        Coupon,
        coupon.id,
        Coupon.status == CouponStatus.RESERVED,
        status=CouponStatus.SENT,
        wechat_coupon_id=wechat_id,
        sent_at=utcnow(),
        last_error=None,
    ):
        _record_capability(coupon.merchant_id, stock.kind, enabled=True, reason=None, code=None)
    db.session.commit()
    return CouponStatus.SENT


def _wechat_stock_used_up(stock: CouponStock) -> None:
    """WeChat's stock is smaller than ours: this coupon's place is given back and WeChat's size becomes the
    places still taken (one UPDATE on the counter, so concurrent refusals each take one off: at the end it
    is what WeChat really sent). The difference to our size is reported with the stock."""
    db.session.execute(
        update(CouponStock)
        .where(CouponStock.id == stock.id, CouponStock.issued > 0)
        .values(issued=CouponStock.issued - 1, wechat_max_coupons=CouponStock.issued - 1)
        .execution_options(synchronize_session=False)
    )
    db.session.expire(stock)
    logger.warning("coupon stock %s: WeChat's stock is used up", stock.id)


def link_wechat_size(
    *, merchant_id: int, stock_id: int, wechat_max_coupons: int | None = None
) -> CouponStock:
    """Record WeChat's size of a stock when it is smaller than ours: given, or read from WeChat's stock
    query (vouchers). The smaller issues from now on; the difference is reported with the stock."""
    stock = get_stock(merchant_id=merchant_id, stock_id=stock_id)
    if wechat_max_coupons is None:
        if stock.kind is not CouponKind.VOUCHER or stock.wechat_stock_id is None:
            raise Conflict(
                "only a voucher stock WeChat has can be read back", details={"kind": stock.kind.value}
            )
        try:
            answer = coupons_client(_merchant(merchant_id)).query_voucher_stock(stock.wechat_stock_id)
        except WeChatError as exc:
            raise _refused(merchant_id, stock, exc) from None
        size = (answer.get("stock_use_rule") or {}).get("max_coupons")
        if type(size) is not int or size < 0:
            raise UpstreamError("WeChat's stock has no size", details={"wechat_code": None})
        wechat_max_coupons = size
    stock.wechat_max_coupons = wechat_max_coupons if wechat_max_coupons < stock.max_coupons else None
    return stock


def end_coupon(coupon: Coupon, to: CouponStatus, *, key: str, give_back: bool = False) -> bool:
    """A live coupon ends (expired, deactivated, failed): its reservation goes back to the budget once.

    The guard is the conditional UPDATE from a state that may end this way, never booked; its reservation
    is read with it (it changes only through such guarded updates)."""
    live = [status for status, allowed in COUPON_TRANSITIONS.items() if to in allowed]
    db.session.flush()
    held = db.session.scalar(select(Coupon.reserved).where(Coupon.id == coupon.id))
    if not guarded_update(
        Coupon,
        coupon.id,
        Coupon.status.in_(live),
        Coupon.booked_at.is_(None),
        Coupon.reserved == held,
        status=to,
        ended_at=utcnow(),
        reserved=Money(0),
    ):
        return False
    if held is not None and held.fen > 0:
        accounts = campaign_accounts(coupon.merchant_id, coupon.campaign_id)
        post_entry(
            key=key,
            reason=EntryReason.RELEASE,
            cause_type="coupon",
            cause_id=str(coupon.id),
            lines=[(accounts.reserved, -held), (accounts.budget, held)],
            merchant_id=coupon.merchant_id,
            rule_version_id=coupon.rule_version_id,
            memo=f"release reservation of coupon {coupon.id} ({to.value})",
        )
    if give_back:
        give_back_place(coupon.stock_id)
    return True


def resend_reserved(older_than_s: int = 60, limit: int = 200) -> list[int]:
    """Reserved vouchers whose send has not been confirmed: the ids to send again (same key)."""
    return list(
        db.session.scalars(
            select(Coupon.id)
            .where(
                Coupon.status == CouponStatus.RESERVED,
                Coupon.kind == CouponKind.VOUCHER,
                Coupon.created_at <= utcnow() - timedelta(seconds=older_than_s),
            )
            .order_by(Coupon.id)
            .limit(limit)
        )
    )


# ---------------------------------------------------------------- merchant coupons: the plugin


def plugin_params(
    *, merchant_id: int, consumer_id: int, stock_id: int, coupon_id: int | None = None
) -> dict[str, Any]:
    """Offer a merchant coupon to a consumer through the mini-program ``send-coupon`` plugin: the coupon is
    reserved with our code now (or, with ``coupon_id``, the one already reserved for them: a rule's reward,
    a buyer's leg); the signed parameters go to ``<send-coupon>``; COUPON.SEND binds it."""
    stock = get_stock(merchant_id=merchant_id, stock_id=stock_id)
    if stock.kind is not CouponKind.MERCHANT_COUPON:
        raise Conflict(
            "vouchers are sent by the server, not through the plugin", details={"kind": stock.kind.value}
        )
    merchant = _merchant(merchant_id)
    appid, openid = _openid(merchant_id, consumer_id, AppKind.MINIPROGRAM)
    if coupon_id is not None:
        held = db.session.get(Coupon, coupon_id)
        if held is None or (held.merchant_id, held.consumer_id, held.stock_id) != (
            merchant_id,
            consumer_id,
            stock_id,
        ):
            raise NotFound("no such coupon of yours in this stock", details={"coupon_id": coupon_id})
        coupon = held
    else:
        coupon = issue_coupon(
            merchant_id=merchant_id,
            stock_id=stock_id,
            consumer_id=consumer_id,
            channel=Channel.PLUGIN,
            issue_key=f"plugin:{stock_id}:{consumer_id}",
            appid=appid,
            openid=openid,
        )
    if coupon.status not in (CouponStatus.RESERVED, CouponStatus.SENT):
        raise Conflict(
            f"this consumer's coupon is {coupon.status.value}", details={"status": coupon.status.value}
        )
    v2_key = merchant_secrets(merchant).v2_api_key
    if not v2_key:
        raise Conflict(
            "the plugin's signature needs the merchant's APIv2 key", details={"kind": stock.kind.value}
        )
    assert stock.wechat_stock_id is not None and coupon.wechat_coupon_id is not None
    params = send_coupon_params(
        [PluginCoupon(stock.wechat_stock_id, coupon.out_request_no, coupon.wechat_coupon_id)],
        merchant.mchid or "",
        v2_key,
    )
    # The same coupon by H5 (an official-account page): the link WeChat opens, signed alike.
    h5_url = h5_send_url(
        stock_id=stock.wechat_stock_id,
        out_request_no=coupon.out_request_no,
        merchant=merchant.mchid or "",
        openid=openid,
        coupon_code=coupon.wechat_coupon_id,
        v2_key=v2_key,
    )
    return {"coupon_id": coupon.id, **params, "h5_url": h5_url}


def coupons_of(*, merchant_id: int, consumer_id: int) -> list[Coupon]:
    return list(
        db.session.scalars(
            select(Coupon)
            .where(Coupon.merchant_id == merchant_id, Coupon.consumer_id == consumer_id)
            .order_by(Coupon.id.desc())
        )
    )


def coupons_of_stock(*, merchant_id: int, stock_id: int, limit: int = 500) -> list[Coupon]:
    get_stock(merchant_id=merchant_id, stock_id=stock_id)
    return list(
        db.session.scalars(
            select(Coupon).where(Coupon.stock_id == stock_id).order_by(Coupon.id.desc()).limit(limit)
        )
    )
