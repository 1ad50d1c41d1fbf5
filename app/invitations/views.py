"""Mini-program endpoints: my invite code, link and QR code; accepting an invitation."""

from __future__ import annotations

from typing import Any

from flask import Response

from app.auth.guards import consumer_required, current_consumer
from app.core.api import Blueprint
from app.core.tx import commit
from app.invitations import service
from app.invitations.schemas import BindingSchema, BindSchema, InviteSchema

blp = Blueprint(
    "mp_invitations", __name__, url_prefix="/api/mp/v1", description="Invite codes and invitations."
)


@blp.route("/me/invite")
@consumer_required
@blp.response(200, InviteSchema)
def my_invite() -> Any:
    """My invite code (created on first request), its mini-program path, H5 link and QR code URL."""
    principal = current_consumer()
    invite = service.invite_of(merchant_id=principal.merchant_id, consumer_id=principal.consumer_id)
    commit()
    return invite


@blp.route("/me/invite/qr.png")
@consumer_required
@blp.response(200, content_type="image/png", description="A PNG QR code of the share path.")
def my_invite_qr() -> Response:
    """A PNG QR code of my invite's mini-program share path."""
    principal = current_consumer()
    png = service.invite_qr_png(merchant_id=principal.merchant_id, consumer_id=principal.consumer_id)
    commit()
    response = Response(png, status=200, mimetype="image/png")
    response.headers["Cache-Control"] = "private, max-age=86400"
    return response


@blp.route("/invitations/bind", methods=["POST"])
@consumer_required
@blp.arguments(BindSchema)
@blp.response(201, BindingSchema)
def bind(body: dict[str, str]) -> Any:
    """Accept an invitation: first one wins (409 after), not your own (422), new customers only (409)."""
    principal = current_consumer()
    binding = service.bind_invitation(
        merchant_id=principal.merchant_id, consumer_id=principal.consumer_id, code=body["code"]
    )
    commit()
    return binding
