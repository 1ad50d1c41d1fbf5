"""The risk review queue: held rewards with their reasons and scores (approve, reject with a reason, ban —
optionally the linked group —, one at a time or in bulk), the decisions log, linked account groups, and the
policy (the merchant's limits beside the seed defaults, observe or enforce) with its dry run.

Roles as the risk API's: a reviewer (or the owner) reads and resolves the queue and runs the dry run; only
the owner changes the policy; every other role is refused. Each action calls the service the API calls
(which moves the money, exactly, and audits).
"""

from __future__ import annotations

from typing import Any

from flask import flash, make_response, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as BaseResponse

from app.audit.service import Actor
from app.auth.principals import Role
from app.core.errors import InvalidInput
from app.core.tx import commit
from app.risk import review, service
from app.risk.models import HoldStatus
from app.risk.policy import DEFAULT
from app.risk.schemas import (
    RiskApproveSchema,
    RiskBanSchema,
    RiskBulkSchema,
    RiskDryRunSchema,
    RiskRejectSchema,
)
from app.web.blueprint import bp
from app.web.forms import load
from app.web.guards import current_page, page
from app.web.queries import decision_scores

PAGE_SIZE = 100
LINK_KINDS = ("device", "ip", "payer", "phone")
# The policy form's rows, in the policy's order (docs/risk.md names the signal behind each).
POLICY_LABELS = {
    "enabled": "Risk control on (off: the engine is skipped, nothing recorded)",
    "enforce": "Enforce (off: observe only — decisions recorded, nothing refused or held)",
    "ip_claims_per_day": "Claims per IP per day",
    "ip_min_interval_seconds": "Seconds between claims from one IP",
    "device_claims_per_day": "Claims per device per day",
    "user_claims_per_day": "Claims per consumer per day",
    "user_claims_per_week": "Claims per consumer per week",
    "user_claims_per_month": "Claims per consumer per month",
    "group_claims_per_day": "Claims per linked group per day",
    "require_device": "Refuse a claim without a device id",
    "new_accounts_per_ip_per_day": "New accounts per IP per day before holding",
    "new_accounts_per_device_per_day": "New accounts per device per day before holding",
    "max_group_size": "Largest linked group before holding (0: off)",
    "orders_per_user_per_hour": "Paid orders per consumer per hour before holding",
    "trail_window_minutes": "Minutes of browse/cart trail an order needs (0: off)",
    "refunds_per_month": "Refunds per consumer in 30 days before holding (0: off)",
    "virtual_prefixes": "Virtual-operator number prefixes (comma separated)",
    "link_by": "Identifiers that link accounts",
    "hold_withdrawals_under_review": "Hold withdrawals of a consumer with a reward under review",
}
_DRY_RUN = "risk_dry_run_result"  # the last dry run's answer, shown once on the policy page
_BULK = "risk_bulk_result"


def _reviewer() -> review.Reviewer:
    ctx = current_page()
    return review.Reviewer(Actor("staff", str(ctx.principal.staff_id)), ctx.principal.staff_id)


def _id(raw: str) -> int | None:
    raw = raw.strip()
    return int(raw) if raw.isdigit() and 0 < len(raw) < 19 and int(raw) > 0 else None


def _back(slug: str) -> BaseResponse:
    status = request.form.get("filter_status", "")
    kept: dict[str, Any] = {"status": status} if status else {}
    return redirect(url_for("console_pages.review_queue", slug=slug, **kept), 303)


@bp.route("/m/<slug>/review", methods=["GET"])
@page(Role.REVIEWER)
def review_queue(slug: str) -> BaseResponse:
    """Holds (default: still held), newest first, with reasons, what they hold and the decision's scores."""
    merchant_id = current_page().merchant.id
    raw_status = request.args.get("status", HoldStatus.HELD.value)
    status = HoldStatus(raw_status) if raw_status in {s.value for s in HoldStatus} else HoldStatus.HELD
    reason = request.args.get("reason", "").strip()[:64]
    before = _id(request.args.get("before", ""))
    holds = review.list_holds(merchant_id=merchant_id, status=status, limit=PAGE_SIZE, before_id=before)
    scores = decision_scores(
        merchant_id=merchant_id, decision_ids=[h["decision_id"] for h in holds if h["decision_id"]]
    )
    reasons = sorted({r for h in holds for r in h["reasons"]})
    shown = [h for h in holds if not reason or reason in h["reasons"]]
    return make_response(
        render_template(
            "console/review_queue.html",
            holds=shown,
            scores=scores,
            status=status.value,
            statuses=[s.value for s in HoldStatus],
            reason=reason,
            reasons=reasons,
            next_before=holds[-1]["id"] if len(holds) == PAGE_SIZE else None,
            bulk_result=session.pop(_BULK, None),
        )
    )


@bp.route("/m/<slug>/review/<int:hold_id>/approve", methods=["POST"])
@page(Role.REVIEWER, while_suspended=True)
def review_approve(slug: str, hold_id: int) -> BaseResponse:
    """Release a held reward to settlement."""
    body = load(RiskApproveSchema(), {"note": request.form.get("note", "").strip() or None})
    review.approve(
        merchant_id=current_page().merchant.id, hold_id=hold_id, reviewer=_reviewer(), note=body["note"]
    )
    commit()
    flash("Reward approved: it settles like any other", "ok")
    return _back(slug)


@bp.route("/m/<slug>/review/<int:hold_id>/reject", methods=["POST"])
@page(Role.REVIEWER, while_suspended=True)
def review_reject(slug: str, hold_id: int) -> BaseResponse:
    """Reverse a held reward to the campaign budget, with a reason."""
    body = load(RiskRejectSchema(), {"reason": request.form.get("reason", "").strip()})
    review.reject(
        merchant_id=current_page().merchant.id, hold_id=hold_id, reviewer=_reviewer(), reason=body["reason"]
    )
    commit()
    flash("Reward rejected: reversed to the campaign budget", "ok")
    return _back(slug)


@bp.route("/m/<slug>/review/<int:hold_id>/ban", methods=["POST"])
@page(Role.REVIEWER, while_suspended=True)
def review_ban(slug: str, hold_id: int) -> BaseResponse:
    """Reject the hold and ban its consumer (or, asked, the whole linked group)."""
    body = load(
        RiskBanSchema(),
        {"reason": request.form.get("reason", "").strip(), "group": request.form.get("group") == "on"},
    )
    review.ban(
        merchant_id=current_page().merchant.id,
        hold_id=hold_id,
        reviewer=_reviewer(),
        reason=body["reason"],
        group=body["group"],
    )
    commit()
    flash("Reward rejected and the consumer banned", "ok")
    return _back(slug)


@bp.route("/m/<slug>/review/bulk", methods=["POST"])
@page(Role.REVIEWER, while_suspended=True)
def review_bulk(slug: str) -> BaseResponse:
    """One action on the selected holds; those already resolved are reported, the others proceed."""
    raw_ids = request.form.getlist("hold_ids")
    action = request.form.get("action", "")
    body = load(
        RiskBulkSchema(),
        {
            "hold_ids": [int(h) if h.isdigit() and len(h) < 19 else h for h in raw_ids],
            "action": action,
            "reason": request.form.get("reason", "").strip() or None,
            "group": request.form.get("group") == "on",
        },
    )
    if body["action"] in ("reject", "ban") and not body["reason"]:
        raise InvalidInput("invalid input", details={"fields": {"reason": ["a rejection needs a reason"]}})
    result = review.bulk(merchant_id=current_page().merchant.id, reviewer=_reviewer(), **body)
    commit()
    session[_BULK] = {"action": body["action"], "done": result["done"], "refused": result["refused"]}
    flash("Bulk action done", "ok")
    return _back(slug)


@bp.route("/m/<slug>/review/decisions", methods=["GET"])
@page(Role.REVIEWER)
def review_decisions(slug: str) -> BaseResponse:
    """The engine's latest decisions (optionally one consumer's) with their reasons and scores."""
    raw = request.args.get("consumer_id", "")
    consumer_id = _id(raw)
    rows = review.decisions(merchant_id=current_page().merchant.id, consumer_id=consumer_id, limit=PAGE_SIZE)
    return make_response(
        render_template("console/review_decisions.html", decisions=rows, consumer_id=consumer_id or "")
    )


@bp.route("/m/<slug>/review/groups", methods=["GET"])
@page(Role.REVIEWER)
def review_groups(slug: str) -> BaseResponse:
    """Linked account groups of two or more, largest first; one group's members and what links them."""
    merchant_id = current_page().merchant.id
    consumer_id = _id(request.args.get("consumer_id", ""))
    group = (
        service.consumer_group(merchant_id=merchant_id, consumer_id=consumer_id)
        if consumer_id is not None
        else None
    )
    return make_response(
        render_template(
            "console/review_groups.html",
            groups=service.groups(merchant_id=merchant_id),
            group=group,
            consumer_id=consumer_id or "",
        )
    )


def _policy_of_form() -> dict[str, Any]:
    """Every setting of the policy form in the policy's own shape (the service validates and names fields)."""
    changes: dict[str, Any] = {}
    for name, default in DEFAULT.model_dump(mode="json").items():
        if isinstance(default, bool):
            changes[name] = request.form.get(name) == "on"
        elif isinstance(default, int):
            raw = request.form.get(name, "").strip()
            changes[name] = int(raw) if raw.isdigit() and len(raw) < 10 else raw
        elif name == "link_by":
            changes[name] = [k for k in request.form.getlist(name) if k in LINK_KINDS]
        else:
            text = request.form.get(name, "")
            changes[name] = [part for part in text.replace("，", ",").replace(" ", ",").split(",") if part]
    return changes


@bp.route("/m/<slug>/review/policy", methods=["GET"])
@page(Role.REVIEWER)
def review_policy(slug: str) -> BaseResponse:
    """The merchant's policy beside the seed defaults, observe or enforce, and the dry run's last answer."""
    current = service.get_policy(merchant_id=current_page().merchant.id)
    dry_run = session.pop(_DRY_RUN, None)
    return make_response(
        render_template(
            "console/review_policy.html",
            current=current,
            defaults=DEFAULT.model_dump(mode="json"),
            link_kinds=LINK_KINDS,
            labels=POLICY_LABELS,
            shown=(dry_run or {}).get("candidate") or current["policy"],
            dry_run=dry_run,
        )
    )


@bp.route("/m/<slug>/review/policy", methods=["POST"])
@page(Role.OWNER)
def review_policy_save(slug: str) -> BaseResponse:
    """The whole form as the policy (a new version, audited). Owner only, as the API."""
    ctx = current_page()
    service.update_policy(
        merchant_id=ctx.merchant.id,
        changes=_policy_of_form(),
        actor=Actor("staff", str(ctx.principal.staff_id)),
    )
    commit()
    flash("Risk policy saved", "ok")
    return redirect(url_for("console_pages.review_policy", slug=slug), 303)


@bp.route("/m/<slug>/review/dry-run", methods=["POST"])
@page(Role.REVIEWER, while_suspended=True)
def review_dry_run(slug: str) -> BaseResponse:
    """The last N days replayed through the form's policy: how many rewards it would limit or hold.
    Nothing is written."""
    raw_days = request.form.get("days", "").strip()
    body = load(
        RiskDryRunSchema(),
        {
            "policy": _policy_of_form(),
            "days": int(raw_days) if raw_days.isdigit() and len(raw_days) < 4 else raw_days,
        },
    )
    result = service.run_dry_run(
        merchant_id=current_page().merchant.id, changes=body["policy"], days=body["days"]
    )
    # The candidate goes back to the form with the answer, so the owner saves what was tried.
    session[_DRY_RUN] = {"candidate": body["policy"], **result}
    return redirect(url_for("console_pages.review_policy", slug=slug), 303)
