"""Exports: a short one downloads at once; a long one runs as a job whose progress the page shows."""

from __future__ import annotations

from flask import Response, flash, make_response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from app.audit.service import Actor
from app.auth.principals import Role
from app.core.tx import commit
from app.exports import service
from app.web.blueprint import bp
from app.web.guards import current_page, page


def _attachment(data: bytes, fmt: str, name: str) -> Response:
    response = Response(data, mimetype=service.MIME[fmt])
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@bp.route("/m/<slug>/exports", methods=["GET"])
@page(Role.FINANCE, Role.VIEWER)
def exports(slug: str) -> BaseResponse:
    merchant_id = current_page().merchant.id
    counts = {name: service.count_rows(merchant_id=merchant_id, name=name) for name in service.KINDS}
    jobs = service.recent_exports(merchant_id=merchant_id)
    return make_response(
        render_template(
            "console/exports.html",
            counts=counts,
            jobs=jobs,
            direct_max=service.DIRECT_MAX_ROWS,
            pending=any(j["status"] in ("queued", "running") for j in jobs),
        )
    )


@bp.route("/m/<slug>/exports/<kind>.<fmt>", methods=["GET"])
@page(Role.FINANCE, Role.VIEWER)
def export_download(slug: str, kind: str, fmt: str) -> BaseResponse:
    """At most :data:`service.DIRECT_MAX_ROWS` rows at once; longer ones are sent to the exports page."""
    service.kind_of(kind, fmt)
    merchant_id = current_page().merchant.id
    total = service.count_rows(merchant_id=merchant_id, name=kind)
    if total > service.DIRECT_MAX_ROWS:
        flash("Too long to download at once: run it as a job", "error")
        return redirect(url_for("console_pages.exports", slug=slug), 303)
    data = service.write(kind, fmt, service.rows(merchant_id=merchant_id, name=kind))
    return _attachment(data, fmt, service.filename(slug, kind, fmt))


@bp.route("/m/<slug>/exports", methods=["POST"])
@page(Role.FINANCE, Role.VIEWER, while_suspended=True)
def export_start(slug: str) -> BaseResponse:
    ctx = current_page()
    service.start_export(
        merchant_id=ctx.merchant.id,
        merchant_slug=slug,
        name=request.form.get("kind", ""),
        fmt=request.form.get("fmt", ""),
        actor=Actor("staff", str(ctx.principal.staff_id)),
    )
    commit()
    flash("Export queued", "ok")
    return redirect(url_for("console_pages.exports", slug=slug), 303)


@bp.route("/m/<slug>/exports/jobs/<export_id>", methods=["GET"])
@page(Role.FINANCE, Role.VIEWER)
def export_job_file(slug: str, export_id: str) -> BaseResponse:
    state, data = service.export_file(merchant_id=current_page().merchant.id, export_id=export_id)
    return _attachment(data, state["fmt"], state["filename"])
