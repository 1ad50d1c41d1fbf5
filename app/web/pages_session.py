"""Logging in and out, the merchant switcher, the language."""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import unquote, urlsplit

from flask import g, make_response, redirect, render_template, request, session, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from app.auth.guards import public
from app.core.errors import Forbidden, RateLimited, Unauthenticated
from app.core.tx import commit
from app.extensions import db
from app.merchants.models import Merchant
from app.staff.service import memberships_of
from app.staff.sessions import close_session, open_session
from app.web import i18n
from app.web.blueprint import bp, lang
from app.web.guards import any_staff, signed_in

LOGIN_CSRF = "login_csrf"


def _safe_next(target: str | None) -> str | None:
    """Only a console path of this site (never another host, never ``//evil``)."""
    if not target:
        return None
    target = unquote(target)
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/console/") or target.startswith("//"):
        return None
    return target


@bp.route("/login", methods=["GET"])
@public
def login() -> BaseResponse:
    """The login form (its own CSRF token: a session cookie exists only after login)."""
    try:
        signed_in()
        return redirect(_safe_next(request.args.get("next")) or url_for("console_pages.home"), 303)
    except Unauthenticated:
        pass
    session.setdefault(LOGIN_CSRF, secrets.token_urlsafe(32))
    return make_response(render_template("console/login.html", next=request.args.get("next", ""), error=None))


@bp.route("/login", methods=["POST"])
@public
def login_submit() -> BaseResponse:
    """Check the form's token, then log in exactly as ``POST /api/console/v1/session`` does."""
    expected = str(session.get(LOGIN_CSRF, ""))
    supplied = request.form.get("csrf_token", "")
    if not expected or not hmac.compare_digest(expected.encode(), supplied.encode()):
        raise Forbidden("missing or wrong CSRF token", details={"field": "csrf_token"})
    target = _safe_next(request.form.get("next"))
    try:
        open_session(email=request.form.get("email", ""), password=request.form.get("password", ""))
    except (Unauthenticated, RateLimited) as exc:
        commit()  # the failure's audit entry and counters stay
        status = 429 if isinstance(exc, RateLimited) else 401
        body = render_template(
            "console/login.html",
            next=request.form.get("next", ""),
            error=i18n.translate(str(exc), lang()),
            locked=status == 429,
        )
        response = make_response(body, status)
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after_seconds)
        return response
    commit()
    return redirect(target or url_for("console_pages.home"), 303)


@bp.route("/logout", methods=["POST"])
@any_staff
def logout() -> BaseResponse:
    close_session()
    return redirect(url_for("console_pages.login"), 303)


@bp.route("/", methods=["GET"])
@any_staff
def home() -> BaseResponse:
    """The merchant switcher: straight to the only merchant, else a list (platform admins see all)."""
    principal = g.principal
    if principal.is_platform_admin:
        merchants = [
            {"slug": slug, "name": name, "role": "owner"}
            for slug, name in db.session.execute(
                select(Merchant.slug, Merchant.name).order_by(Merchant.slug)
            ).tuples()
        ]
    else:
        merchants = [
            {"slug": m.merchant, "name": m.merchant_name, "role": m.role.value}
            for m in memberships_of(principal.staff_id)
        ]
    if len(merchants) == 1 and request.args.get("all") is None:
        return redirect(url_for("console_pages.dashboard", slug=merchants[0]["slug"]), 303)
    return make_response(render_template("console/switch.html", merchants=merchants, email=principal.email))


@bp.route("/lang/<code>", methods=["GET"])
@public
def set_language(code: str) -> BaseResponse:
    """Remember the language (a preference cookie; nothing else changes)."""
    target = _safe_next(request.args.get("next")) or url_for("console_pages.home")
    response = redirect(target, 303)
    if code in i18n.LANGS:
        response.set_cookie(i18n.COOKIE, code, max_age=365 * 86400, samesite="Lax", httponly=True)
    return response
