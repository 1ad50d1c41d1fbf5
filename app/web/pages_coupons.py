"""Coupons: stocks (vouchers 代金券 by default, merchant coupons 商家券 only where WeChat allows them), their
metrics per stock and channel, a stock's coupons, and the operator's actions — create, start / pause /
restart / stop, WeChat's size, issue to one consumer, push to a segment, revoke a merchant coupon.

Roles as the coupon API's: every role reads; an operator (or the owner) acts. Each action calls the service
the API calls and audits as the API does.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import flash, make_response, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as BaseResponse

from app.audit.service import Actor, record_audit
from app.auth.principals import Role
from app.campaigns import service as campaigns
from app.campaigns.models import CampaignStatus
from app.core.tx import commit
from app.coupons import merchant_coupons, metrics, service
from app.coupons.listing import find_coupons
from app.coupons.models import Channel, CouponKind, CouponStatus, StockStatus
from app.coupons.schemas import (
    IssueSchema,
    PushSchema,
    RevokeSchema,
    StockActionSchema,
    StockCreateSchema,
    WeChatSizeSchema,
)
from app.web import i18n
from app.web.blueprint import bp, lang
from app.web.forms import fen, load, local_time
from app.web.guards import current_page, page

PAGE_SIZE = 50
# The channels a stock may be created with (a rule's reward and staff issues need none).
CHANNELS = (
    Channel.FOLLOW.value,
    Channel.AFTER_PAYMENT.value,
    Channel.PUSH.value,
    Channel.PLUGIN.value,
    Channel.FIRST_VISIT.value,
    Channel.TASK.value,
)
TASK_KINDS = ("view", "cart", "share")
_PUSH_RESULT = "coupon_push_result"  # the last push's answer, shown once on the stock's page


def _task_of_form() -> dict[str, Any] | None:
    """The task block of the create form, only with the task channel (the schema checks the values)."""
    if Channel.TASK.value not in request.form.getlist("channels"):
        return None
    count, days = request.form.get("task_count", "").strip(), request.form.get("task_days", "1").strip()
    return {
        "kind": request.form.get("task_kind", ""),
        "count": int(count) if count.isdigit() and len(count) < 4 else count,
        "within_days": int(days) if days.isdigit() and len(days) < 4 else days,
    }


def _actor() -> Actor:
    return Actor("staff", str(current_page().principal.staff_id))


def _audit(action: str, target_type: str, target_id: int, after: dict[str, Any]) -> None:
    record_audit(
        actor=_actor(),
        action=action,
        target_type=target_type,
        target_id=target_id,
        merchant_id=current_page().merchant.id,
        after=after,
    )


def _open_campaigns(merchant_id: int) -> list[Any]:
    """The campaigns a stock may belong to (not ended)."""
    return [
        c for c in campaigns.list_campaigns(merchant_id=merchant_id) if c.status is not CampaignStatus.ENDED
    ]


def _two_way_rules(open_campaigns: list[Any]) -> dict[int, list[str]]:
    """Each open campaign's two-way rule ids (a stock linked to one freezes its rates)."""
    found: dict[int, list[str]] = {}
    for campaign in open_campaigns:
        document = campaigns.current_version(campaign).document
        found[campaign.id] = [r["id"] for r in document.get("rules", []) if r.get("kind") == "two_way"]
    return found


def _chart(rows: list[dict[str, Any]], names: list[str] | None = None) -> dict[str, Any]:
    """Per stock (or a stock and its channels): counts and money, as the metrics service gave them."""
    return {
        "names": names or [f"#{row['stock_id']} {row['name']}" for row in rows],
        "issued": [row["issued"] for row in rows],
        "claimed": [row["claimed"] for row in rows],
        "redeemed": [row["redeemed"] for row in rows],
        "cost_fen": [row["cost_fen"] for row in rows],
        "gmv_fen": [row["gmv_fen"] for row in rows],
    }


@bp.route("/m/<slug>/coupons", methods=["GET"])
@page()
def coupons(slug: str) -> BaseResponse:
    """Every stock with its limits and metrics, the channels' breakdown, what WeChat allows, a create form."""
    merchant_id = current_page().merchant.id
    capabilities = {row["kind"]: row for row in service.capabilities(merchant_id)}
    rows = metrics.stock_metrics(merchant_id=merchant_id)
    open_campaigns = _open_campaigns(merchant_id) if current_page().may(Role.OPERATOR) else []
    stocks = {stock.id: stock for stock in service.list_stocks(merchant_id=merchant_id)}
    return make_response(
        render_template(
            "console/coupons.html",
            rows=rows,
            stocks=stocks,
            capabilities=capabilities,
            merchant_coupons_off=capabilities[CouponKind.MERCHANT_COUPON.value]["enabled"] is False,
            vouchers_off=capabilities[CouponKind.VOUCHER.value]["enabled"] is False,
            campaigns=open_campaigns,
            two_way=_two_way_rules(open_campaigns),
            channels=CHANNELS,
            task_kinds=TASK_KINDS,
            chart=_chart(rows),
        )
    )


@bp.route("/m/<slug>/coupons", methods=["POST"])
@page(Role.OPERATOR)
def coupon_stock_create(slug: str) -> BaseResponse:
    """A stock created at WeChat and started (409 with WeChat's reason when the product is off)."""
    ctx = current_page()
    raw_max = request.form.get("max_coupons", "").strip()
    raw_campaign = request.form.get("campaign_id", "").strip()
    body = load(
        StockCreateSchema(),
        {
            "campaign_id": int(raw_campaign)
            if raw_campaign.isdigit() and len(raw_campaign) < 19
            else raw_campaign,
            "kind": request.form.get("kind", CouponKind.VOUCHER.value),
            "name": request.form.get("name", "").strip(),
            "face_value_fen": fen("face_value", required=False),
            "min_spend_fen": fen("min_spend", required=False),
            "valid_from": local_time("valid_from"),
            "valid_until": local_time("valid_until"),
            "max_coupons": int(raw_max) if raw_max.isdigit() else raw_max,
            "channels": request.form.getlist("channels"),
            "no_cash": request.form.get("no_cash") == "on",
            "rule_id": request.form.get("rule_id") or None,
            "task": _task_of_form(),
        },
    )
    stock = service.create_stock(
        merchant_id=ctx.merchant.id,
        campaign_id=body["campaign_id"],
        kind=CouponKind(body["kind"]),
        name=body["name"],
        face_value=body["face_value_fen"],
        min_spend=body["min_spend_fen"],
        valid_from=body["valid_from"],
        valid_until=body["valid_until"],
        max_coupons=body["max_coupons"],
        channels=body["channels"],
        no_cash=body["no_cash"],
        rule_id=body["rule_id"],
        scope=body["scope"],
        activate=body["activate"],
        task=body["task"],
    )
    _audit(
        "coupon_stock.create",
        "coupon_stock",
        stock.id,
        {"kind": stock.kind.value, "max_coupons": stock.max_coupons, "status": stock.status.value},
    )
    commit()
    flash("Coupon stock created", "ok")
    return redirect(url_for("console_pages.coupon_stock", slug=slug, stock_id=stock.id), 303)


@bp.route("/m/<slug>/coupons/capabilities/<kind>/ask-again", methods=["POST"])
@page(Role.OPERATOR)
def coupon_capability_ask_again(slug: str, kind: str) -> BaseResponse:
    """The merchant opened the product at WeChat Pay since it was refused: the next call asks WeChat."""
    service.ask_capability_again(current_page().merchant.id, service.coupon_kind(kind), actor=_actor())
    commit()
    flash("WeChat Pay will be asked again at the next coupon call", "ok")
    return redirect(url_for("console_pages.coupons", slug=slug), 303)


@bp.route("/m/<slug>/coupons/<int:stock_id>", methods=["GET"])
@page()
def coupon_stock(slug: str, stock_id: int) -> BaseResponse:
    """One stock: its terms and limits, its metrics per channel, its coupons (found and paged), actions."""
    merchant_id = current_page().merchant.id
    stock = service.get_stock(merchant_id=merchant_id, stock_id=stock_id)
    (figures,) = metrics.stock_metrics(merchant_id=merchant_id, stock_id=stock.id)
    raw_status = request.args.get("status", "")
    raw_consumer = request.args.get("consumer_id", "").strip()
    raw_before = request.args.get("before", "")
    number = request.args.get("q", "").strip()[:64]
    rows, next_before = find_coupons(
        merchant_id=merchant_id,
        stock_id=stock.id,
        status=CouponStatus(raw_status) if raw_status in {s.value for s in CouponStatus} else None,
        consumer_id=int(raw_consumer) if raw_consumer.isdigit() and len(raw_consumer) < 19 else None,
        number=number or None,
        before=int(raw_before) if raw_before.isdigit() and len(raw_before) < 19 else None,
        limit=PAGE_SIZE,
    )
    return make_response(
        render_template(
            "console/coupon_stock.html",
            stock=stock,
            m=figures,
            coupons=rows,
            next_before=next_before,
            filters={"status": raw_status, "consumer_id": raw_consumer, "q": number},
            statuses=[s.value for s in CouponStatus],
            transitions=_actions(stock.status),
            issue_key=secrets.token_urlsafe(12),
            push_result=session.pop(_PUSH_RESULT, None),
            chart=_chart(
                [figures, *figures["channels"]],
                [stock.name, *(i18n.translate(c["channel"], lang()) for c in figures["channels"])],
            ),
            live=[s.value for s in (CouponStatus.RESERVED, CouponStatus.SENT, CouponStatus.CLAIMED)],
        )
    )


def _actions(status: StockStatus) -> list[tuple[str, str]]:
    """The status buttons a stock in ``status`` offers (as the API's transitions allow)."""
    offered = {
        StockStatus.CREATED: [("running", "Start")],
        StockStatus.RUNNING: [("paused", "Pause")],
        StockStatus.PAUSED: [("running", "Restart")],
    }.get(status, [])
    if status in (StockStatus.CREATED, StockStatus.RUNNING, StockStatus.PAUSED):
        offered.append(("stopped", "Stop"))
    return offered


@bp.route("/m/<slug>/coupons/<int:stock_id>/status", methods=["POST"])
@page(Role.OPERATOR)
def coupon_stock_status(slug: str, stock_id: int) -> BaseResponse:
    body = load(StockActionSchema(), {"status": request.form.get("status", "")})
    changed = service.change_stock(
        merchant_id=current_page().merchant.id, stock_id=stock_id, to=StockStatus(body["status"])
    )
    _audit("coupon_stock.status", "coupon_stock", stock_id, {"status": changed.status.value})
    commit()
    flash("Coupon stock status changed", "ok")
    return redirect(url_for("console_pages.coupon_stock", slug=slug, stock_id=stock_id), 303)


@bp.route("/m/<slug>/coupons/<int:stock_id>/submit", methods=["POST"])
@page(Role.OPERATOR)
def coupon_stock_submit(slug: str, stock_id: int) -> BaseResponse:
    """A draft stock sent to WeChat again with its saved ``out_request_no`` (after an unknown outcome)."""
    service.submit_stock(merchant_id=current_page().merchant.id, stock_id=stock_id)
    commit()
    flash("Coupon stock sent to WeChat again", "ok")
    return redirect(url_for("console_pages.coupon_stock", slug=slug, stock_id=stock_id), 303)


@bp.route("/m/<slug>/coupons/<int:stock_id>/wechat-size", methods=["POST"])
@page(Role.OPERATOR)
def coupon_stock_wechat_size(slug: str, stock_id: int) -> BaseResponse:
    raw = request.form.get("wechat_max_coupons", "").strip()
    body = load(WeChatSizeSchema(), {"wechat_max_coupons": int(raw) if raw.isdigit() else (raw or None)})
    service.link_wechat_size(
        merchant_id=current_page().merchant.id,
        stock_id=stock_id,
        wechat_max_coupons=body["wechat_max_coupons"],
    )
    commit()
    flash("WeChat's size of the stock recorded", "ok")
    return redirect(url_for("console_pages.coupon_stock", slug=slug, stock_id=stock_id), 303)


@bp.route("/m/<slug>/coupons/<int:stock_id>/issue", methods=["POST"])
@page(Role.OPERATOR)
def coupon_issue(slug: str, stock_id: int) -> BaseResponse:
    """One coupon to one consumer, once per the form's key (a double submit issues one)."""
    raw = request.form.get("consumer_id", "").strip()
    body = load(
        IssueSchema(),
        {
            "consumer_id": int(raw) if raw.isdigit() and len(raw) < 19 else raw,
            "idempotency_key": request.form.get("idempotency_key", ""),
        },
    )
    service.issue_coupon(
        merchant_id=current_page().merchant.id,
        stock_id=stock_id,
        consumer_id=body["consumer_id"],
        channel=Channel.DIRECT,
        issue_key=f"direct:{stock_id}:{body['idempotency_key']}",
    )
    commit()
    flash("Coupon issued", "ok")
    return redirect(url_for("console_pages.coupon_stock", slug=slug, stock_id=stock_id), 303)


@bp.route("/m/<slug>/coupons/<int:stock_id>/push", methods=["POST"])
@page(Role.OPERATOR)
def coupon_push(slug: str, stock_id: int) -> BaseResponse:
    """A campaign push to the consumers who paid at least N in the last D days (once per consumer)."""
    raw_days = request.form.get("days", "").strip()
    body = load(
        PushSchema(),
        {"min_paid_fen": fen("min_paid"), "days": int(raw_days) if raw_days.isdigit() else raw_days},
    )
    result = service.push_to_segment(
        merchant_id=current_page().merchant.id,
        stock_id=stock_id,
        min_paid_fen=body["min_paid_fen"].fen,
        days=body["days"],
    )
    commit()
    session[_PUSH_RESULT] = {
        "segment": result["segment"],
        "issued": result["issued"],
        "refused": dict(list(result["refused"].items())[:50]),
        "refused_count": len(result["refused"]),
    }
    flash("Push done", "ok")
    return redirect(url_for("console_pages.coupon_stock", slug=slug, stock_id=stock_id), 303)


@bp.route("/m/<slug>/coupons/<int:stock_id>/coupons/<int:coupon_id>/revoke", methods=["POST"])
@page(Role.OPERATOR)
def coupon_revoke(slug: str, stock_id: int, coupon_id: int) -> BaseResponse:
    """A live merchant coupon revoked: its reservation back now, deactivated at WeChat after commit."""
    body = load(RevokeSchema(), {"reason": request.form.get("reason", "").strip()})
    ctx = current_page()
    coupon = merchant_coupons.revoke(merchant_id=ctx.merchant.id, coupon_id=coupon_id, reason=body["reason"])
    _audit("coupon.revoke", "coupon", coupon_id, {"status": coupon.status.value, "reason": body["reason"]})
    commit()
    flash("Coupon revoked", "ok")
    return redirect(url_for("console_pages.coupon_stock", slug=slug, stock_id=stock_id), 303)
