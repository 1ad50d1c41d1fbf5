"""Finance: withdrawals under review, payouts (stuck or unknown: retry, resolve), reconciliation."""

from __future__ import annotations

from typing import Any

from flask import flash, make_response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from app.audit.service import Actor
from app.auth.principals import Role
from app.core.errors import InvalidInput
from app.core.tx import commit
from app.payouts import operations
from app.payouts import service as payout_service
from app.payouts.models import PayoutStatus
from app.payouts.schemas import STUCK, ResolveSchema
from app.web.blueprint import bp
from app.web.forms import load
from app.web.guards import current_page, page
from app.web.queries import reconciliation_differences
from app.withdrawals import service as withdrawal_service
from app.withdrawals.models import WithdrawalStatus
from app.withdrawals.schemas import RejectSchema


def _actor() -> Actor:
    return Actor("staff", str(current_page().principal.staff_id))


@bp.route("/m/<slug>/withdrawals", methods=["GET"])
@page(Role.FINANCE)
def withdrawals(slug: str) -> BaseResponse:
    raw = request.args.get("status", "pending_review")
    status = WithdrawalStatus(raw) if raw in {s.value for s in WithdrawalStatus} else None
    rows = withdrawal_service.list_for_console(merchant_id=current_page().merchant.id, status=status)
    return make_response(
        render_template("console/withdrawals.html", rows=rows, status=raw, statuses=list(WithdrawalStatus))
    )


@bp.route("/m/<slug>/withdrawals/<int:withdrawal_id>/approve", methods=["POST"])
@page(Role.FINANCE, while_suspended=True)
def withdrawal_approve(slug: str, withdrawal_id: int) -> BaseResponse:
    ctx = current_page()
    withdrawal_service.approve_withdrawal(
        merchant_id=ctx.merchant.id,
        withdrawal_id=withdrawal_id,
        staff_id=ctx.principal.staff_id,
        actor=_actor(),
    )
    commit()
    flash("Withdrawal approved: its payout is queued", "ok")
    return redirect(url_for("console_pages.withdrawals", slug=slug, status="all"), 303)


@bp.route("/m/<slug>/withdrawals/<int:withdrawal_id>/reject", methods=["POST"])
@page(Role.FINANCE, while_suspended=True)
def withdrawal_reject(slug: str, withdrawal_id: int) -> BaseResponse:
    body = load(RejectSchema(), {"reason": request.form.get("reason", "")})
    withdrawal_service.reject_withdrawal(
        merchant_id=current_page().merchant.id,
        withdrawal_id=withdrawal_id,
        reason=body["reason"],
        staff_id=current_page().principal.staff_id,
        actor=_actor(),
    )
    commit()
    flash("Withdrawal rejected: the money is back in the wallet", "ok")
    return redirect(url_for("console_pages.withdrawals", slug=slug), 303)


@bp.route("/m/<slug>/payouts", methods=["GET"])
@page(Role.FINANCE)
def payouts(slug: str) -> BaseResponse:
    """By state; ``stuck``: submitting/unknown past the query deadline (the ones a person must look at)."""
    raw = request.args.get("status", "")
    merchant_id = current_page().merchant.id
    rows: list[Any]
    if raw == STUCK:
        rows = operations.stuck_payouts(merchant_id=merchant_id)
    else:
        statuses = [PayoutStatus(raw)] if raw in {s.value for s in PayoutStatus} else None
        rows = payout_service.list_payouts(merchant_id=merchant_id, statuses=statuses)
    return make_response(
        render_template(
            "console/payouts.html", rows=rows, status=raw, statuses=[*(s.value for s in PayoutStatus), STUCK]
        )
    )


@bp.route("/m/<slug>/payouts/<int:payout_id>/retry", methods=["POST"])
@page(Role.FINANCE, while_suspended=True)
def payout_retry(slug: str, payout_id: int) -> BaseResponse:
    operations.retry_payout(merchant_id=current_page().merchant.id, payout_id=payout_id, actor=_actor())
    commit()
    flash("A pass of the payout is queued", "ok")
    return redirect(url_for("console_pages.payouts", slug=slug), 303)


@bp.route("/m/<slug>/payouts/<int:payout_id>/resolve", methods=["POST"])
@page(Role.FINANCE, while_suspended=True)
def payout_resolve(slug: str, payout_id: int) -> BaseResponse:
    body = load(
        ResolveSchema(),
        {"outcome": request.form.get("outcome", ""), "reason": request.form.get("reason", "")},
    )
    if body["outcome"] not in ("succeeded", "failed"):
        raise InvalidInput("unknown outcome")
    operations.resolve_payout(
        merchant_id=current_page().merchant.id,
        payout_id=payout_id,
        outcome=body["outcome"],
        reason=body["reason"],
        actor=_actor(),
    )
    commit()
    flash("Payout resolved", "ok")
    return redirect(url_for("console_pages.payouts", slug=slug), 303)


@bp.route("/m/<slug>/reconciliation", methods=["GET"])
@page(Role.FINANCE)
def reconciliation(slug: str) -> BaseResponse:
    """What `reconcile trades|payouts` found: every difference, WeChat's amount beside ours."""
    rows = reconciliation_differences(merchant_id=current_page().merchant.id)
    return make_response(render_template("console/reconciliation.html", rows=rows))
