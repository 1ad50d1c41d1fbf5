"""``/h5/m/<slug>/…``: a follower's pages (wallet and timeline, red packets, coupons), server-rendered in zh-CN.

Public routes in the API's sense: each page authenticates the follower from the H5 session cookie itself
and sends a stranger to the official account's web OAuth instead of answering 401.
"""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, make_response, redirect, render_template, request
from werkzeug.wrappers import Response as BaseResponse

from app.auth.guards import public
from app.core.money import Money
from app.core.tx import commit
from app.coupons.models import CouponStatus
from app.coupons.service import coupons_of
from app.h5 import service
from app.red_packets.service import packets_of
from app.wallet.service import timeline, wallet_of

bp = Blueprint("h5_pages", __name__, url_prefix="/h5/m")
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")  # how followers read times

# Pages load only their own script and style, and WeChat's JS-SDK; nothing inline, no frames.
CSP = (
    "default-src 'self'; script-src 'self' https://res.wx.qq.com; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _not_found() -> Response:
    return make_response(render_template("h5/message.html", title="页面不存在", text="没有这个商户。"), 404)


def _sign_in(slug: str, appid: str) -> BaseResponse:
    query = urlencode({"appid": appid, "scope": "snsapi_base", "next": f"/h5/m/{slug}/signed-in"})
    return redirect(f"/h5/v1/oauth/start?{query}", code=302)


@bp.get("/<slug>/")
@public
def wallet(slug: str) -> BaseResponse:
    """The follower's wallet: pending, available, withdrawing, owed; the latest lines; red packets."""
    merchant = service.merchant_by_slug(slug)
    if merchant is None:
        return _not_found()
    principal = service.follower(merchant, request.cookies.get(service.COOKIE))
    if principal is None:
        return _sign_in(slug, merchant.oa_appid or "")
    balances = wallet_of(merchant_id=merchant.id, consumer_id=principal.consumer_id)
    lines = timeline(merchant_id=merchant.id, consumer_id=principal.consumer_id, limit=20)
    packets = packets_of(merchant_id=merchant.id, consumer_id=principal.consumer_id)
    # Coupons not yet in the card pack (reserved, or refused by WeChat) are not the follower's to see.
    coupons = [
        coupon
        for coupon in coupons_of(merchant_id=merchant.id, consumer_id=principal.consumer_id)
        if coupon.status not in (CouponStatus.RESERVED, CouponStatus.FAILED)
    ]
    return make_response(
        render_template(
            "h5/wallet.html",
            merchant=merchant,
            wallet=balances,
            lines=lines,
            packets=packets,
            coupons=coupons,
            slug=slug,
            beijing=BEIJING,
        )
    )


@bp.get("/<slug>/signed-in")
@public
def signed_in(slug: str) -> Response:
    """Where the OAuth callback lands: a script hands the token in the fragment to ``session``."""
    if service.merchant_by_slug(slug) is None:
        return _not_found()
    return make_response(render_template("h5/signed_in.html", slug=slug))


@bp.post("/<slug>/session")
@public
def session(slug: str) -> Response:
    """Keep the follower's token (from the OAuth fragment) in an HttpOnly cookie for this merchant."""
    merchant = service.merchant_by_slug(slug)
    body: Any = request.get_json(silent=True)
    token = body.get("token") if isinstance(body, dict) else None
    if merchant is None or not isinstance(token, str) or len(token) > 256:
        return Response(status=400)
    principal = service.follower(merchant, token)
    if principal is None:
        return Response(status=401)
    commit()
    response = Response(status=204)
    response.set_cookie(
        service.COOKIE,
        token,
        max_age=7 * 86400,
        httponly=True,
        secure=request.is_secure,
        samesite="Lax",
        path=f"/h5/m/{slug}/",
    )
    return response


def yuan(amount: Money | int) -> str:
    """¥12.34 from fen (the sign kept: an owed amount shows as owed, not negative)."""
    fen = amount.fen if isinstance(amount, Money) else int(amount)
    return f"¥{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


@bp.app_template_filter("yuan")
def _yuan(amount: Money | int) -> str:
    return yuan(amount)
