"""Consumers (search, timeline, ban), staff and roles, shop keys, the audit log, followers."""

from __future__ import annotations

import io
from typing import Any

import qrcode
from flask import Response, flash, make_response, redirect, render_template, request, url_for
from qrcode.image.pure import PyPNGImage
from werkzeug.wrappers import Response as BaseResponse

from app.audit.queries import list_audit_entries
from app.audit.service import Actor
from app.auth.principals import Role
from app.books.service import consumer_detail, list_consumers
from app.console.schemas import BanSchema
from app.console.service import ban_consumer, unban_consumer
from app.core.errors import InvalidInput
from app.core.tx import commit
from app.followers import service as followers_service
from app.followers.models import QrPurpose, ReplyKind, ReplyTrigger
from app.followers.schemas import QrCodeRequestSchema, ReplyRequestSchema
from app.shop_keys.service import create_shop_key, list_shop_keys, revoke_shop_key, rotate_shop_key
from app.staff import service as staff_service
from app.wallet.service import timeline
from app.web.blueprint import bp
from app.web.forms import load
from app.web.guards import current_page, page


def _actor() -> Actor:
    return Actor("staff", str(current_page().principal.staff_id))


def _id(field: str) -> int | None:
    text = request.form.get(field, "").strip()
    return int(text) if text.isdigit() and len(text) <= 18 else None


# ---------------------------------------------------------------- consumers


@bp.route("/m/<slug>/consumers", methods=["GET"])
@page()
def consumers(slug: str) -> BaseResponse:
    q = request.args.get("q", "").strip()[:64] or None
    before = request.args.get("before", "")
    rows, next_before = list_consumers(
        merchant_id=current_page().merchant.id,
        limit=50,
        before=int(before) if before.isdigit() and len(before) <= 18 else None,
        q=q,
    )
    return make_response(
        render_template("console/consumers.html", rows=rows, q=q or "", next_before=next_before)
    )


@bp.route("/m/<slug>/consumers/<int:consumer_id>", methods=["GET"])
@page()
def consumer(slug: str, consumer_id: int) -> BaseResponse:
    merchant_id = current_page().merchant.id
    detail = consumer_detail(merchant_id=merchant_id, consumer_id=consumer_id)
    lines = timeline(merchant_id=merchant_id, consumer_id=consumer_id, limit=50)
    return make_response(render_template("console/consumer.html", d=detail, lines=lines))


@bp.route("/m/<slug>/consumers/<int:consumer_id>/ban", methods=["POST"])
@page(Role.REVIEWER, while_suspended=True)
def consumer_ban(slug: str, consumer_id: int) -> BaseResponse:
    body = load(BanSchema(), {"reason": request.form.get("reason", "")})
    ban_consumer(
        merchant_id=current_page().merchant.id, consumer_id=consumer_id, reason=body["reason"], actor=_actor()
    )
    commit()
    flash("Consumer banned", "ok")
    return redirect(url_for("console_pages.consumer", slug=slug, consumer_id=consumer_id), 303)


@bp.route("/m/<slug>/consumers/<int:consumer_id>/unban", methods=["POST"])
@page(Role.REVIEWER, while_suspended=True)
def consumer_unban(slug: str, consumer_id: int) -> BaseResponse:
    unban_consumer(merchant_id=current_page().merchant.id, consumer_id=consumer_id, actor=_actor())
    commit()
    flash("Ban lifted", "ok")
    return redirect(url_for("console_pages.consumer", slug=slug, consumer_id=consumer_id), 303)


# ---------------------------------------------------------------- staff


def _role(field: str = "role") -> Role:
    raw = request.form.get(field, "")
    if raw not in {r.value for r in Role}:
        raise InvalidInput("unknown role", details={"fields": {field: ["unknown role"]}})
    return Role(raw)


@bp.route("/m/<slug>/staff", methods=["GET"])
@page()
def staff(slug: str) -> BaseResponse:
    members = staff_service.list_members(merchant_id=current_page().merchant.id)
    return make_response(
        render_template("console/staff.html", members=members, roles=[r.value for r in Role])
    )


@bp.route("/m/<slug>/staff", methods=["POST"])
@page(Role.OWNER)
def staff_add(slug: str) -> BaseResponse:
    email = request.form.get("email", "").strip()
    if not 3 <= len(email) <= 254:
        raise InvalidInput("not an email", details={"fields": {"email": ["3 to 254 characters"]}})
    staff_service.add_member(
        merchant_id=current_page().merchant.id, email=email, role=_role(), actor=_actor()
    )
    commit()
    flash("Role given", "ok")
    return redirect(url_for("console_pages.staff", slug=slug), 303)


@bp.route("/m/<slug>/staff/<int:staff_id>", methods=["POST"])
@page(Role.OWNER)
def staff_change(slug: str, staff_id: int) -> BaseResponse:
    merchant_id = current_page().merchant.id
    if request.form.get("remove") == "1":
        staff_service.remove_member(merchant_id=merchant_id, staff_id=staff_id, actor=_actor())
        flash("Role removed", "ok")
    else:
        staff_service.change_member_role(
            merchant_id=merchant_id, staff_id=staff_id, role=_role(), actor=_actor()
        )
        flash("Role changed", "ok")
    commit()
    return redirect(url_for("console_pages.staff", slug=slug), 303)


# ---------------------------------------------------------------- shop keys


@bp.route("/m/<slug>/shop-keys", methods=["GET"])
@page(Role.VIEWER)
def shop_keys(slug: str) -> BaseResponse:
    return _shop_keys_page(None)


def _shop_keys_page(issued: Any) -> BaseResponse:
    keys = list_shop_keys(merchant_id=current_page().merchant.id)
    response = make_response(render_template("console/shop_keys.html", keys=keys, issued=issued))
    return response


@bp.route("/m/<slug>/shop-keys", methods=["POST"])
@page(Role.OWNER)
def shop_key_create(slug: str) -> BaseResponse:
    """A new key, shown on this answer only (never stored in a cookie or a flash message)."""
    name = request.form.get("name", "").strip()
    if not 1 <= len(name) <= 80:
        raise InvalidInput("a name is needed", details={"fields": {"name": ["1 to 80 characters"]}})
    issued = create_shop_key(merchant_id=current_page().merchant.id, name=name, actor=_actor())
    commit()
    return _shop_keys_page(issued)


@bp.route("/m/<slug>/shop-keys/<int:key_id>/rotate", methods=["POST"])
@page(Role.OWNER)
def shop_key_rotate(slug: str, key_id: int) -> BaseResponse:
    issued = rotate_shop_key(merchant_id=current_page().merchant.id, key_id=key_id, actor=_actor())
    commit()
    return _shop_keys_page(issued)


@bp.route("/m/<slug>/shop-keys/<int:key_id>/revoke", methods=["POST"])
@page(Role.OWNER)
def shop_key_revoke(slug: str, key_id: int) -> BaseResponse:
    revoke_shop_key(merchant_id=current_page().merchant.id, key_id=key_id, actor=_actor())
    commit()
    flash("Key revoked", "ok")
    return redirect(url_for("console_pages.shop_keys", slug=slug), 303)


# ---------------------------------------------------------------- audit


@bp.route("/m/<slug>/audit", methods=["GET"])
@page(Role.FINANCE, Role.VIEWER)
def audit(slug: str) -> BaseResponse:
    cursor = request.args.get("cursor") or None
    found = list_audit_entries(merchant_id=current_page().merchant.id, limit=50, cursor=cursor)
    return make_response(render_template("console/audit.html", page_of=found))


# ---------------------------------------------------------------- followers


@bp.route("/m/<slug>/followers", methods=["GET"])
@page()
def followers(slug: str) -> BaseResponse:
    merchant_id = current_page().merchant.id
    return make_response(
        render_template(
            "console/followers.html",
            codes=followers_service.qr_codes(merchant_id=merchant_id),
            replies=followers_service.replies(merchant_id=merchant_id),
            stats=followers_service.follower_stats(merchant_id=merchant_id),
            purposes=[p.value for p in QrPurpose],
        )
    )


@bp.route("/m/<slug>/followers/qr-codes", methods=["POST"])
@page(Role.OPERATOR)
def qr_code_create(slug: str) -> BaseResponse:
    raw: dict[str, Any] = {"purpose": request.form.get("purpose", "")}
    for field in ("inviter_id", "campaign_id"):
        if (value := _id(field)) is not None:
            raw[field] = value
    if channel := request.form.get("channel", "").strip():
        raw["channel"] = channel
    if (seconds := _id("expire_seconds")) is not None:
        raw["expire_seconds"] = seconds
    body = load(QrCodeRequestSchema(), raw)
    followers_service.create_qr_code(
        merchant_id=current_page().merchant.id,
        purpose=QrPurpose(body["purpose"]),
        channel=body.get("channel"),
        inviter_id=body.get("inviter_id"),
        campaign_id=body.get("campaign_id"),
        expire_seconds=body.get("expire_seconds"),
        actor=_actor(),
        staff_id=current_page().principal.staff_id,
    )
    commit()
    flash("QR code created", "ok")
    return redirect(url_for("console_pages.followers", slug=slug), 303)


@bp.route("/m/<slug>/followers/qr-codes/<int:qr_id>.png", methods=["GET"])
@page()
def qr_code_png(slug: str, qr_id: int) -> Response:
    """The code as a PNG to print, rendered from the text WeChat encoded (as the API's image)."""
    row = followers_service.qr_code(merchant_id=current_page().merchant.id, qr_id=qr_id)
    code = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=8, border=4, image_factory=PyPNGImage
    )
    code.add_data(row.url)
    code.make(fit=True)
    png = io.BytesIO()
    code.make_image().save(png)
    return Response(png.getvalue(), mimetype="image/png")


@bp.route("/m/<slug>/followers/replies", methods=["POST"])
@page(Role.OPERATOR)
def reply_set(slug: str) -> BaseResponse:
    body = load(
        ReplyRequestSchema(),
        {
            "trigger": request.form.get("trigger", ""),
            "keyword": request.form.get("keyword", ""),
            "kind": "text",
            "body": {"content": request.form.get("content", "")},
        },
    )
    followers_service.set_reply(
        merchant_id=current_page().merchant.id,
        trigger=ReplyTrigger(body["trigger"]),
        keyword=body.get("keyword", ""),
        kind=ReplyKind(body["kind"]),
        body=body["body"],
        actor=_actor(),
    )
    commit()
    flash("Reply saved", "ok")
    return redirect(url_for("console_pages.followers", slug=slug), 303)


@bp.route("/m/<slug>/followers/replies/<int:reply_id>/delete", methods=["POST"])
@page(Role.OPERATOR)
def reply_delete(slug: str, reply_id: int) -> BaseResponse:
    followers_service.delete_reply(merchant_id=current_page().merchant.id, reply_id=reply_id, actor=_actor())
    commit()
    flash("Reply removed", "ok")
    return redirect(url_for("console_pages.followers", slug=slug), 303)
