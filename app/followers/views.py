"""The official account's message server (``/wechat/<slug>/oa``, public: the signature is the check) and
the console's follower API: parametric QR codes, passive replies, follower counts."""

from __future__ import annotations

import io
from typing import Any

import qrcode
from flask import Blueprint, Response, request
from qrcode.image.pure import PyPNGImage

from app.auth.guards import current_actor, current_merchant_id, current_staff, public, staff_required
from app.auth.principals import Role
from app.core.api import Blueprint as ApiBlueprint
from app.core.tx import commit
from app.followers import server, service
from app.followers.models import QrPurpose, ReplyKind, ReplyTrigger
from app.followers.schemas import (
    FollowerStatsSchema,
    QrCodeRequestSchema,
    QrCodeSchema,
    ReplyRequestSchema,
    ReplySchema,
)

bp = Blueprint("wechat_oa", __name__, url_prefix="/wechat")


@bp.get("/<slug>/oa")
@public
def verify_url(slug: str) -> Response:
    answer = server.verify_url(slug, request.args)
    return Response(answer.body, status=answer.status, mimetype=answer.content_type)


@bp.post("/<slug>/oa")
@public
def push(slug: str) -> Response:
    answer = server.handle_push(slug, request.args, request.get_data(cache=False))
    commit()
    return Response(answer.body, status=answer.status, mimetype=answer.content_type)


blp = ApiBlueprint(
    "console_followers",
    __name__,
    url_prefix="/api/console/v1",
    description="Official-account followers: parametric QR codes (channel, inviter, campaign), passive "
    "replies, follower counts.",
)


@blp.route("/qr-codes", methods=["POST"])
@staff_required(Role.OPERATOR)
@blp.arguments(QrCodeRequestSchema)
@blp.response(201, QrCodeSchema)
def create_qr_code(body: dict[str, Any]) -> tuple[Any, int]:
    """A parametric QR code of the merchant's official account (``qrcode/create``): a follow through it is
    counted for its channel or campaign, or binds the follower to the inviter like an invitation.
    Permanent unless ``expire_seconds`` (60 … 2 592 000) is given. Operator or owner."""
    row = service.create_qr_code(
        merchant_id=current_merchant_id(),
        purpose=QrPurpose(body["purpose"]),
        channel=body.get("channel"),
        inviter_id=body.get("inviter_id"),
        campaign_id=body.get("campaign_id"),
        expire_seconds=body.get("expire_seconds"),
        actor=current_actor(),
        staff_id=current_staff().staff_id,
    )
    commit()
    return row, 201


@blp.route("/qr-codes")
@staff_required()
@blp.response(200, QrCodeSchema(many=True))
def list_qr_codes() -> list[Any]:
    """Every QR code of the merchant, newest first, with its scans and follows. Any role."""
    return service.qr_codes(merchant_id=current_merchant_id())


@blp.route("/qr-codes/<int:qr_id>/image.png")
@staff_required()
@blp.response(200, description="The QR code as a PNG image.")
def qr_code_image(qr_id: int) -> Response:
    """The code as a PNG to print (rendered here from the text WeChat encoded). Any role."""
    row = service.qr_code(merchant_id=current_merchant_id(), qr_id=qr_id)
    code = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=8, border=4, image_factory=PyPNGImage
    )
    code.add_data(row.url)
    code.make(fit=True)
    png = io.BytesIO()
    code.make_image().save(png)
    return Response(png.getvalue(), mimetype="image/png")


@blp.route("/oa/replies")
@staff_required()
@blp.response(200, ReplySchema(many=True))
def list_replies() -> list[Any]:
    """The passive replies: on follow, and to text messages containing a keyword. Any role."""
    return service.replies(merchant_id=current_merchant_id())


@blp.route("/oa/replies", methods=["PUT"])
@staff_required(Role.OPERATOR)
@blp.arguments(ReplyRequestSchema)
@blp.response(200, ReplySchema)
def put_reply(body: dict[str, Any]) -> Any:
    """Set the reply for a trigger (``subscribe``, or ``keyword`` with its keyword): text or news.
    Operator or owner."""
    row = service.set_reply(
        merchant_id=current_merchant_id(),
        trigger=ReplyTrigger(body["trigger"]),
        keyword=body.get("keyword", ""),
        kind=ReplyKind(body["kind"]),
        body=body["body"],
        actor=current_actor(),
    )
    commit()
    return row


@blp.route("/oa/replies/<int:reply_id>", methods=["DELETE"])
@staff_required(Role.OPERATOR)
@blp.response(204)
def delete_reply(reply_id: int) -> None:
    """Remove a reply. Operator or owner."""
    service.delete_reply(merchant_id=current_merchant_id(), reply_id=reply_id, actor=current_actor())
    commit()


@blp.route("/followers/stats")
@staff_required()
@blp.response(200, FollowerStatsSchema)
def stats() -> Any:
    """How many follow now, how many left, how many are not yet linked to a consumer. Any role."""
    return service.follower_stats(merchant_id=current_merchant_id())
