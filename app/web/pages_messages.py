"""Messages to consumers: the template each kind of message uses on each channel (mini-program subscribe
message, official-account template message) with the values that fill it, and the outbox (sent, failed,
no channel). Every role reads; an operator (or the owner) sets a template, as the JSON API."""

from __future__ import annotations

from flask import flash, make_response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from app.audit.service import Actor
from app.auth.principals import Role
from app.core.tx import commit
from app.messages import service
from app.messages.models import Channel, MessageKind, MessageStatus
from app.messages.schemas import TemplateRequestSchema
from app.web.blueprint import bp
from app.web.forms import load
from app.web.guards import current_page, page


def _fields(text: str) -> dict[str, str]:
    """``amount2=amount`` one per line (or separated by commas) as WeChat's key → our value."""
    found: dict[str, str] = {}
    for line in text.replace(",", "\n").splitlines():
        key, _, value = line.partition("=")
        if key.strip():
            found[key.strip()] = value.strip()
    return found


@bp.route("/m/<slug>/messages", methods=["GET"])
@page()
def messages(slug: str) -> BaseResponse:
    merchant_id = current_page().merchant.id
    raw = request.args.get("status", "")
    status = MessageStatus(raw) if raw in {s.value for s in MessageStatus} else None
    configured = {(t.kind.value, t.channel.value): t for t in service.templates(merchant_id=merchant_id)}
    return make_response(
        render_template(
            "console/messages.html",
            kinds=[k.value for k in MessageKind],
            channels=[c.value for c in Channel],
            values={k.value: v for k, v in service.VALUES.items()},
            configured=configured,
            outbox=service.recent(merchant_id=merchant_id, status=status),
            status=raw,
            statuses=[s.value for s in MessageStatus],
        )
    )


@bp.route("/m/<slug>/messages/templates", methods=["POST"])
@page(Role.OPERATOR)
def message_template(slug: str) -> BaseResponse:
    """Set the template of one kind on one channel (audited by the service)."""
    body = load(
        TemplateRequestSchema(),
        {
            "kind": request.form.get("kind", ""),
            "channel": request.form.get("channel", ""),
            "template_id": request.form.get("template_id", "").strip(),
            "fields": _fields(request.form.get("fields", "")),
            "page": request.form.get("page", "").strip(),
        },
    )
    service.set_template(
        merchant_id=current_page().merchant.id,
        kind=MessageKind(body["kind"]),
        channel=Channel(body["channel"]),
        template_id=body["template_id"],
        fields=body["fields_"],
        page=body["page"],
        actor=Actor("staff", str(current_page().principal.staff_id)),
    )
    commit()
    flash("Message template saved", "ok")
    return redirect(url_for("console_pages.messages", slug=slug), 303)
