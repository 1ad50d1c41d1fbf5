"""The console pages' blueprint: headers (CSP and friends), the error pages, template helpers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from app.core.errors import DomainError
from app.core.http import error_response
from app.core.money import Money
from app.web import i18n
from app.web.guards import CSRF_FIELD, wants_html
from app.web.nav import navigation

bp = Blueprint(
    "console_pages",
    __name__,
    url_prefix="/console",
    template_folder="templates",
)
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")

# Own scripts and styles only (ECharts is vendored, never fetched): no inline script, no eval, no frames.
# ECharts positions its tooltip with a style attribute, hence style-src-attr alone allows inline styles.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@bp.before_request
def _fresh() -> None:
    # g outlives a request where an app context is shared (tests, CLI): nothing of an earlier one shows.
    g.pop("page", None)
    g.pop("principal", None)


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=()"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(DomainError)
def _domain_error(exc: DomainError) -> BaseResponse | tuple[Response, int]:
    if not wants_html():
        return error_response(exc.status, exc.code, str(exc), exc.details)
    if request.method == "POST" and exc.status in (404, 409, 422, 429):
        # A refused action: back to the page it came from, saying why.
        flash(i18n.translate(str(exc), lang()) + _field_details(exc), "error")
        return redirect(_same_origin_referrer() or url_for("console_pages.home"), 303)
    body = render_template("console/error.html", status=exc.status, message=str(exc), code=exc.code)
    return make_response(body, exc.status), exc.status


def _field_details(exc: DomainError) -> str:
    fields = (exc.details or {}).get("fields") if isinstance(exc.details, dict) else None
    if not isinstance(fields, dict) or not fields:
        return ""
    return " — " + "; ".join(f"{name}: {', '.join(map(str, problems))}" for name, problems in fields.items())


def _same_origin_referrer() -> str | None:
    referrer = request.referrer or ""
    parts = urlsplit(referrer)
    if parts.netloc and parts.netloc != request.host:
        return None
    if not parts.path.startswith("/console/"):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def lang() -> str:
    return i18n.pick(request.cookies.get(i18n.COOKIE), request.accept_languages.best_match(i18n.LANGS))


@bp.app_context_processor
def _helpers() -> dict[str, Any]:
    if request.blueprint != "console_pages":
        return {}
    current = lang()
    return {
        "_": lambda text, **values: (
            i18n.translate(text, current).format(**values) if values else i18n.translate(text, current)
        ),
        "lang": current,
        "csrf_field": CSRF_FIELD,
        "csrf_token": session.get("csrf", ""),
        "page_ctx": g.get("page"),
        "nav": navigation(g.get("page")),
    }


def yuan(amount: Money | int | None) -> str:
    """¥1,234.56 from fen; a negative amount keeps its sign."""
    if amount is None:
        return "—"
    fen = amount.fen if isinstance(amount, Money) else int(amount)
    sign = "-" if fen < 0 else ""
    return f"{sign}¥{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


def percent(rate: str | None) -> str:
    """A decimal string ratio (``"0.5000"``) as a percentage, never through a float."""
    if rate is None:
        return "—"
    whole, _, frac = rate.partition(".")
    frac = (frac + "0000")[:4]
    hundredths = int(whole.lstrip("-") or 0) * 10000 + int(frac)
    sign = "-" if rate.startswith("-") else ""
    return f"{sign}{hundredths // 100}.{hundredths % 100:02d}%"


def bp_rate(value: int | None) -> str:
    if value is None:
        return "—"
    return f"{value // 100}.{value % 100:02d}%"


def beijing(moment: datetime | str | None) -> str:
    if moment is None or moment == "":
        return "—"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")


def duration(seconds: int | None) -> str:
    if seconds is None:
        return "—"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return f"{days}d {hours}h" if days else f"{hours}h {minutes}m"


# App-wide names (Jinja has no per-blueprint filters): prefixed so the H5 pages' ``yuan`` stays theirs.
bp.add_app_template_filter(yuan, "console_yuan")
bp.add_app_template_filter(percent, "console_percent")
bp.add_app_template_filter(bp_rate, "console_bp")
bp.add_app_template_filter(beijing, "console_time")
bp.add_app_template_filter(duration, "console_duration")
