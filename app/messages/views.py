"""Consents from the mini-program; templates and the outbox in the console."""

from __future__ import annotations

from typing import Any

from app.auth.guards import (
    consumer_required,
    current_actor,
    current_consumer,
    current_merchant_id,
    staff_required,
)
from app.auth.principals import Role
from app.core.api import Blueprint
from app.core.tx import commit
from app.messages import service
from app.messages.models import Channel, MessageKind
from app.messages.schemas import (
    ConsentRequestSchema,
    ConsentSchema,
    MessageSchema,
    TemplateRequestSchema,
    TemplateSchema,
)

mp = Blueprint("mp_messages", __name__, url_prefix="/api/mp/v1", description="Subscribe-message consents.")
console = Blueprint(
    "console_messages",
    __name__,
    url_prefix="/api/console/v1",
    description="Messages to consumers: the templates used, and what was sent (or why not).",
)


@mp.route("/message-consents", methods=["POST"])
@consumer_required
@mp.arguments(ConsentRequestSchema)
@mp.response(200, ConsentSchema)
def consents(body: dict[str, Any]) -> dict[str, Any]:
    """Report what `wx.requestSubscribeMessage` answered: each accepted template of this merchant holds
    one more one-time consent (one message each). Other templates are ignored."""
    principal = current_consumer()
    held = service.record_consents(
        merchant_id=principal.merchant_id, consumer_id=principal.consumer_id, results=body["results"]
    )
    commit()
    return {"held": held}


@console.route("/message-templates")
@staff_required()
@console.response(200, TemplateSchema(many=True))
def templates() -> list[Any]:
    """The template of each message kind on each channel. Any role."""
    return service.templates(merchant_id=current_merchant_id())


@console.route("/message-templates", methods=["PUT"])
@staff_required(Role.OPERATOR)
@console.arguments(TemplateRequestSchema)
@console.response(200, TemplateSchema)
def put_template(body: dict[str, Any]) -> Any:
    """Set the template a kind of message uses on a channel, and which of our values fills each of its
    fields. Operator or owner."""
    row = service.set_template(
        merchant_id=current_merchant_id(),
        kind=MessageKind(body["kind"]),
        channel=Channel(body["channel"]),
        template_id=body["template_id"],
        fields=body["fields_"],
        page=body["page"],
        actor=current_actor(),
    )
    commit()
    return row


@console.route("/messages")
@staff_required()
@console.response(200, MessageSchema(many=True))
def messages() -> list[Any]:
    """The latest messages owed to consumers, newest first: sent, failed, or with no channel. Any role."""
    return service.recent(merchant_id=current_merchant_id())
