"""``/h5/m/<slug>/…``: a follower's pages (wallet and timeline, red packets, coupons, withdrawals),
server-rendered in zh-CN.

Public routes in the API's sense: each page authenticates the follower from the H5 session cookie itself
and sends a stranger to the official account's web OAuth instead of answering 401.
"""

from __future__ import annotations

import secrets
from datetime import timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, make_response, redirect, render_template, request
from werkzeug.wrappers import Response as BaseResponse

from app.auth.guards import public
from app.auth.principals import ConsumerPrincipal
from app.core.errors import DomainError
from app.core.money import Money
from app.core.tx import commit
from app.coupons.models import CouponStatus
from app.coupons.service import coupons_of
from app.extensions import db
from app.h5 import service
from app.merchants.models import Merchant
from app.red_packets.service import packets_of
from app.wallet.service import timeline, wallet_of
from app.withdrawals.service import request_withdrawal, withdrawal_of, withdrawals_of
from wechat.errors import WeChatError

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


def _follower_or_sign_in(slug: str) -> tuple[Merchant, ConsumerPrincipal] | BaseResponse:
    merchant = service.merchant_by_slug(slug)
    if merchant is None:
        return _not_found()
    principal = service.follower(merchant, request.cookies.get(service.COOKIE))
    if principal is None:
        return _sign_in(slug, merchant.oa_appid or "")
    return merchant, principal


def _withdraw_page(
    merchant: Merchant, principal: ConsumerPrincipal, *, error: str | None = None, status: int = 200
) -> Response:
    balances = wallet_of(merchant_id=merchant.id, consumer_id=principal.consumer_id)
    history = withdrawals_of(merchant_id=merchant.id, consumer_id=principal.consumer_id, limit=20)
    return make_response(
        render_template(
            "h5/withdraw.html",
            merchant=merchant,
            wallet=balances,
            withdrawals=history,
            csrf=service.csrf_token(principal),
            # A fresh key per form shown: a double tap on one form asks once, as the API's key does.
            idempotency_key=secrets.token_urlsafe(18),
            error=error,
            beijing=BEIJING,
            states=WITHDRAWAL_STATES,
        ),
        status,
    )


WITHDRAWAL_STATES = {
    "pending_review": "审核中",
    "rejected": "未通过",
    "paying": "打款中",
    "awaiting_confirmation": "待你确认收款",
    "paid": "已到账",
    "returned": "已退回余额",
}


@bp.get("/<slug>/withdraw")
@public
def withdraw(slug: str) -> BaseResponse:
    """How much can be withdrawn, the form, and the follower's withdrawals."""
    found = _follower_or_sign_in(slug)
    if not isinstance(found, tuple):
        return found
    return _withdraw_page(*found)


@bp.post("/<slug>/withdraw")
@public
def withdraw_submit(slug: str) -> BaseResponse:
    """Ask to withdraw: the same rules as the mini-program's API (minimum, fee, daily limit, review), paid
    by a transfer bill to the follower's official-account openid, which they confirm on the next page."""
    found = _follower_or_sign_in(slug)
    if not isinstance(found, tuple):
        return found
    merchant, principal = found
    if not service.csrf_ok(principal, request.form.get("csrf")):
        return make_response(
            render_template("h5/message.html", title="请求无效", text="请刷新页面后重试。"), 403
        )
    key = request.form.get("idempotency_key", "")
    if not 16 <= len(key) <= 64 or not key.replace("-", "").replace("_", "").isalnum():
        return _withdraw_page(merchant, principal, error="请刷新页面后重试。", status=422)
    try:
        amount = Money.from_yuan(request.form.get("amount", "").strip())
        withdrawal, _created = request_withdrawal(
            merchant_id=merchant.id,
            consumer_id=principal.consumer_id,
            amount=amount,
            idempotency_key=key,
            appid=merchant.oa_appid,
        )
    except ValueError:
        db.session.rollback()
        return _withdraw_page(merchant, principal, error="请输入金额，例如 12.50。", status=422)
    except DomainError as exc:
        db.session.rollback()
        return _withdraw_page(merchant, principal, error=_why_not(exc, merchant), status=exc.status)
    commit()
    return redirect(f"/h5/m/{slug}/withdrawals/{withdrawal.id}", code=303)


def _why_not(exc: DomainError, merchant: Merchant) -> str:
    """A refused withdrawal in the follower's words (the API's answer carries the same in its details)."""
    if exc.code == "insufficient_funds":
        return "可提现余额不足。"
    if "limit_fen" in exc.details:
        return f"超过今日提现额度（{yuan(int(exc.details['limit_fen']))}）。"
    if exc.code == "validation_error":
        return f"单笔最少提现 {yuan(merchant.withdrawal_min)}，且须高于手续费。"
    return "暂时无法提现，请稍后再试。"


@bp.get("/<slug>/withdrawals/<int:withdrawal_id>")
@public
def withdrawal(slug: str, withdrawal_id: int) -> BaseResponse:
    """One withdrawal; while its transfer waits for the follower, the button that confirms it through the
    JS-SDK (``wx.config`` signed with the cached ``jsapi_ticket``, then ``requestMerchantTransfer``)."""
    found = _follower_or_sign_in(slug)
    if not isinstance(found, tuple):
        return found
    merchant, principal = found
    try:
        view = withdrawal_of(
            merchant_id=merchant.id, consumer_id=principal.consumer_id, withdrawal_id=withdrawal_id
        )
    except DomainError:
        return make_response(
            render_template("h5/message.html", title="页面不存在", text="没有这笔提现。"), 404
        )
    confirm: dict[str, Any] | None = None
    unavailable = False
    if view["status"] == "awaiting_confirmation" and view["confirm"]:
        try:
            config = service.js_config(merchant, request.url)
        except (WeChatError, DomainError):
            current_app.logger.warning("jsapi ticket unavailable for merchant %s", merchant.id)
            unavailable = True
        else:
            confirm = {
                "config": {
                    "appId": config.app_id,
                    "timestamp": config.timestamp,
                    "nonceStr": config.nonce_str,
                    "signature": config.signature,
                    "jsApiList": ["requestMerchantTransfer"],
                },
                "transfer": {
                    "mchId": view["confirm"]["mch_id"],
                    "appId": view["confirm"]["appid"],
                    "package": view["confirm"]["package_info"],
                },
            }
    return make_response(
        render_template(
            "h5/withdrawal.html",
            merchant=merchant,
            withdrawal=view,
            confirm=confirm,
            unavailable=unavailable,
            slug=slug,
            beijing=BEIJING,
            states=WITHDRAWAL_STATES,
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
