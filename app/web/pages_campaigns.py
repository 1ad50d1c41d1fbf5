"""The dashboard and the campaigns: list, rule builder, funding, preview, replay, lifecycle."""

from __future__ import annotations

import json
import secrets
from typing import Any

from flask import flash, make_response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from app.audit.service import Actor
from app.auth.principals import Role
from app.books.schemas import DepositRequestSchema
from app.books.service import deposit_merchant_budget
from app.campaigns import preview as previews
from app.campaigns import service
from app.campaigns.models import CampaignStatus
from app.campaigns.schemas import (
    CampaignCreateSchema,
    FundSchema,
    PreviewSchema,
    ReplaySchema,
    campaign_view,
    preview_view,
    replay_view,
)
from app.campaigns.stats import campaign_stats
from app.core.errors import Forbidden, InvalidInput
from app.core.tx import commit
from app.dashboard.schemas import DashboardQuerySchema
from app.dashboard.service import balances, date_range
from app.dashboard.service import dashboard as dashboard_figures
from app.web.blueprint import bp
from app.web.forms import fen, load, local_time
from app.web.guards import current_page, page
from app.web.rule_form import CAPS, KIND_FIELDS, SEED_DOCUMENT, document_from_form, form_values

RULE_KINDS = ("two_way", "ratio", "ladder", "fixed", "cashback", "invite", "distribution", "multiplier")


def _actor() -> Actor:
    return Actor("staff", str(current_page().principal.staff_id))


def _rules_document() -> dict[str, Any]:
    """The builder's fields, or with "JSON" ticked the document typed in the text box."""
    if request.form.get("rules_mode") != "json":
        return document_from_form(request.form)
    try:
        document = json.loads(request.form.get("rules_json", ""))
    except ValueError:
        raise InvalidInput("the rules are not JSON", details={"fields": {"rules": ["not JSON"]}}) from None
    if not isinstance(document, dict):
        raise InvalidInput(
            "the rules must be a JSON object", details={"fields": {"rules": ["not an object"]}}
        )
    return document


# ---------------------------------------------------------------- dashboard


@bp.route("/m/<slug>/", methods=["GET"])
@page()
def dashboard(slug: str) -> BaseResponse:
    """Money from the ledger and the red-packet funnel over a China date range, with charts."""
    query = load(DashboardQuerySchema(), dict(request.args))
    span = date_range(query["first"], query["last"])
    figures = dashboard_figures(merchant_id=current_page().merchant.id, span=span)
    return make_response(
        render_template("console/dashboard.html", d=figures, chart_data=_dashboard_chart(figures))
    )


def _dashboard_chart(figures: dict[str, Any]) -> dict[str, Any]:
    funnel = figures["funnel"]
    return {
        "days": [row["day"] for row in figures["flows"]["series"]],
        "cost_fen": [row["cost_fen"] for row in figures["flows"]["series"]],
        "gmv_driven_fen": [row["gmv_driven_fen"] for row in funnel["series"]],
        "issued": [row["issued"] for row in funnel["series"]],
        "redeemed": [row["redeemed"] for row in funnel["series"]],
        "funnel": [funnel["issued"], funnel["claimed"], funnel["redeemed"]],
    }


# ---------------------------------------------------------------- campaigns


@bp.route("/m/<slug>/campaigns", methods=["GET"])
@page()
def campaigns(slug: str) -> BaseResponse:
    merchant_id = current_page().merchant.id
    rows = [
        campaign_view(c, service.current_version(c), service.budget_view(c))
        for c in service.list_campaigns(merchant_id=merchant_id)
    ]
    budget = balances(merchant_id=merchant_id)["merchant_budget_fen"]
    return make_response(
        render_template(
            "console/campaigns.html",
            campaigns=rows,
            merchant_budget_fen=budget,
            deposit_key=secrets.token_urlsafe(12),
        )
    )


def _builder(campaign: dict[str, Any] | None) -> BaseResponse:
    document = campaign["rules"] if campaign else SEED_DOCUMENT
    return make_response(
        render_template(
            "console/campaign_edit.html",
            campaign=campaign,
            kinds=RULE_KINDS,
            kind_fields=KIND_FIELDS,
            cap_fields=CAPS,
            builder=form_values(document),
            document_json=json.dumps(document, ensure_ascii=False, indent=2),
        )
    )


@bp.route("/m/<slug>/budget/deposits", methods=["POST"])
@page(Role.FINANCE)
def budget_deposit(slug: str) -> BaseResponse:
    """Money the merchant paid in (a bank transfer) into its marketing budget, once per reference."""
    body = load(
        DepositRequestSchema(),
        {"amount_fen": fen("amount"), "idempotency_key": request.form.get("idempotency_key", "").strip()},
    )
    deposit_merchant_budget(
        merchant_id=current_page().merchant.id,
        amount=body["amount_fen"],
        idempotency_key=body["idempotency_key"],
        actor=_actor(),
    )
    commit()
    flash("Deposit recorded", "ok")
    return redirect(url_for("console_pages.campaigns", slug=slug), 303)


@bp.route("/m/<slug>/campaigns/new", methods=["GET"])
@page(Role.OPERATOR)
def campaign_new(slug: str) -> BaseResponse:
    return _builder(None)


@bp.route("/m/<slug>/campaigns", methods=["POST"])
@page(Role.OPERATOR)
def campaign_create(slug: str) -> BaseResponse:
    body = load(
        CampaignCreateSchema(),
        {
            "name": request.form.get("name", ""),
            "starts_at": local_time("starts_at"),
            "ends_at": local_time("ends_at"),
            "rules": _rules_document(),
            "pays_out_as_cash": request.form.get("pays_out_as_cash") == "on",
        },
    )
    ctx = current_page()
    campaign = service.create_campaign(
        merchant_id=ctx.merchant.id, actor=_actor(), staff_id=ctx.principal.staff_id, **body
    )
    commit()
    flash("Campaign created", "ok")
    return redirect(url_for("console_pages.campaign", slug=slug, campaign_id=campaign.id), 303)


def _campaign_page(campaign_id: int, **extra: Any) -> BaseResponse:
    merchant_id = current_page().merchant.id
    campaign = service.get_campaign(merchant_id=merchant_id, campaign_id=campaign_id)
    view = campaign_view(campaign, service.current_version(campaign), service.budget_view(campaign))
    stats = campaign_stats(merchant_id=merchant_id, campaign_id=campaign_id)
    two_way = [r["id"] for r in view["rules"].get("rules", []) if r.get("kind") == "two_way"]
    return make_response(
        render_template(
            "console/campaign.html",
            c=view,
            stats=stats,
            fund_key=secrets.token_urlsafe(12),
            two_way_rules=two_way,
            **extra,
        )
    )


@bp.route("/m/<slug>/campaigns/<int:campaign_id>", methods=["GET"])
@page()
def campaign(slug: str, campaign_id: int) -> BaseResponse:
    return _campaign_page(campaign_id)


@bp.route("/m/<slug>/campaigns/<int:campaign_id>/edit", methods=["GET"])
@page(Role.OPERATOR)
def campaign_edit(slug: str, campaign_id: int) -> BaseResponse:
    found = service.get_campaign(merchant_id=current_page().merchant.id, campaign_id=campaign_id)
    return _builder(campaign_view(found, service.current_version(found), service.budget_view(found)))


@bp.route("/m/<slug>/campaigns/<int:campaign_id>/rules", methods=["POST"])
@page(Role.OPERATOR)
def campaign_rules(slug: str, campaign_id: int) -> BaseResponse:
    ctx = current_page()
    service.new_rules_version(
        merchant_id=ctx.merchant.id,
        campaign_id=campaign_id,
        rules=_rules_document(),
        actor=_actor(),
        staff_id=ctx.principal.staff_id,
    )
    commit()
    flash("New rules version saved", "ok")
    return redirect(url_for("console_pages.campaign", slug=slug, campaign_id=campaign_id), 303)


@bp.route("/m/<slug>/campaigns/<int:campaign_id>/fund", methods=["POST"])
@page(Role.FINANCE)
def campaign_fund(slug: str, campaign_id: int) -> BaseResponse:
    """Budget → campaign, idempotent on the form's key (a double submit moves the money once)."""
    ctx = current_page()
    body = load(
        FundSchema(),
        {
            "amount_fen": fen("amount"),
            "source": request.form.get("source", "merchant"),
            "idempotency_key": request.form.get("idempotency_key", ""),
        },
    )
    service.fund_campaign(
        merchant_id=ctx.merchant.id,
        campaign_id=campaign_id,
        amount=body["amount_fen"],
        source=body["source"],
        key=f"fund:{campaign_id}:{body['idempotency_key']}",
        actor=_actor(),
        is_platform_admin=ctx.principal.is_platform_admin,
    )
    commit()
    flash("Campaign funded", "ok")
    return redirect(url_for("console_pages.campaign", slug=slug, campaign_id=campaign_id), 303)


@bp.route("/m/<slug>/campaigns/<int:campaign_id>/status", methods=["POST"])
@page(Role.OPERATOR, while_suspended=True)
def campaign_status(slug: str, campaign_id: int) -> BaseResponse:
    ctx = current_page()
    target = (
        CampaignStatus(request.form.get("to", ""))
        if request.form.get("to") in ("active", "paused", "ended")
        else None
    )
    if target is None:
        raise InvalidInput("unknown status", details={"fields": {"to": ["active, paused or ended"]}})
    if target is CampaignStatus.ACTIVE and ctx.suspended:
        raise Forbidden("this merchant is suspended: campaigns can be paused or ended, not started")
    service.transition(merchant_id=ctx.merchant.id, campaign_id=campaign_id, to=target, actor=_actor())
    commit()
    flash("Campaign status changed", "ok")
    return redirect(url_for("console_pages.campaign", slug=slug, campaign_id=campaign_id), 303)


@bp.route("/m/<slug>/campaigns/<int:campaign_id>/preview", methods=["POST"])
@page(Role.OPERATOR, while_suspended=True)
def campaign_preview(slug: str, campaign_id: int) -> BaseResponse:
    """One described order through the rules (writes nothing); the answer shown on the campaign's page."""
    order: dict[str, Any] = {
        "total_fen": fen("total"),
        "is_first_paid_order": request.form.get("is_first_paid_order") == "on",
        "has_inviter": request.form.get("has_inviter") == "on",
        "promoter_levels": int(request.form.get("promoter_levels", "0") or 0),
    }
    paid = fen("paid", required=False)
    if paid is not None:
        order["paid_fen"] = paid
    if request.form.get("with_red_packet") == "on":
        rule_id = request.form.get("rule_id", "")
        order["red_packet"] = {"rule_id": rule_id} if rule_id else {}
    body = load(PreviewSchema(), {"order": order})
    result = previews.preview_order(merchant_id=current_page().merchant.id, campaign_id=campaign_id, **body)
    return _campaign_page(campaign_id, preview=preview_view(result), preview_form=request.form)


@bp.route("/m/<slug>/campaigns/<int:campaign_id>/replay", methods=["POST"])
@page(Role.OPERATOR, while_suspended=True)
def campaign_replay(slug: str, campaign_id: int) -> BaseResponse:
    """The last N days of real orders under the rules, with a P&L chart (writes nothing)."""
    raw_days = request.form.get("days", "")
    body = load(ReplaySchema(), {"days": int(raw_days) if raw_days.isdigit() else raw_days})
    result = replay_view(
        previews.replay_orders(merchant_id=current_page().merchant.id, campaign_id=campaign_id, **body)
    )
    chart = {
        "days": [row["date"] for row in result["per_day"]],
        "simulated_cost_fen": [row["simulated"]["cost_fen"] for row in result["per_day"]],
        "simulated_gmv_fen": [row["simulated"]["gmv_driven_fen"] for row in result["per_day"]],
        "live_cost_fen": [row["live"]["cost_fen"] for row in result["per_day"]],
        "live_gmv_fen": [row["live"]["gmv_driven_fen"] for row in result["per_day"]],
    }
    return _campaign_page(campaign_id, replay=result, replay_chart=chart)
