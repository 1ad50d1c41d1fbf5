"""Personal red packets over HTTP: consumers create, pay, claim and confirm them; the console sets a
campaign's terms and lists them."""

from __future__ import annotations

from typing import Any

from flask import request

from app.auth.guards import (
    APPID_HEADER,
    consumer_required,
    current_actor,
    current_consumer,
    current_merchant_id,
    staff_required,
)
from app.auth.principals import Role
from app.core.api import Blueprint
from app.core.tx import commit
from app.extensions import db
from app.merchants.models import Merchant
from app.personal import service
from app.personal.models import PersonalPacket, PersonalTerms
from app.personal.schemas import (
    PersonalClaimSchema,
    PersonalConfirmSchema,
    PersonalConsoleQuerySchema,
    PersonalCreatedSchema,
    PersonalCreatePacketSchema,
    PersonalMyPacketSchema,
    PersonalPacketSchema,
    PersonalShareCodeQuerySchema,
    PersonalTermsInSchema,
    PersonalTermsSchema,
)

mp = Blueprint(
    "mp_personal", __name__, url_prefix="/api/mp/v1", description="Personal red packets between friends."
)
console = Blueprint(
    "console_personal", __name__, url_prefix="/api/console/v1", description="Personal red packets."
)


def _merchant() -> Merchant:
    merchant = db.session.get(Merchant, current_merchant_id())
    assert merchant is not None
    return merchant


# ---------------------------------------------------------------- consumer


@mp.route("/personal-packets", methods=["POST"])
@consumer_required
@mp.arguments(PersonalCreatePacketSchema)
@mp.response(201, PersonalCreatedSchema)
def create(body: dict[str, Any]) -> tuple[service.Created, int]:
    """Fund a red packet for a friend: returns the packet, its share code and the `wx.requestPayment`
    parameters (a JSAPI payment of `amount_fen`). 409 `personal_packets_not_offered` when the campaign
    does not offer them."""
    created = service.create_packet(
        merchant=_merchant(),
        sender_id=current_consumer().consumer_id,
        appid=request.headers[APPID_HEADER],
        **body,
    )
    commit()
    return created, 201


@mp.route("/personal-packets/<int:packet_id>/pay", methods=["POST"])
@consumer_required
@mp.response(200, PersonalCreatedSchema)
def pay(packet_id: int) -> service.Created:
    """The payment parameters again, for a packet its sender has not paid yet."""
    created = service.pay_again(
        merchant=_merchant(),
        sender_id=current_consumer().consumer_id,
        packet_id=packet_id,
        appid=request.headers[APPID_HEADER],
    )
    commit()
    return created


@mp.route("/personal-packets")
@consumer_required
@mp.response(200, PersonalMyPacketSchema(many=True))
def mine() -> list[service.Seen]:
    """The signed-in consumer's personal red packets, sent and received, newest first."""
    principal = current_consumer()
    return service.packets_of(merchant_id=principal.merchant_id, consumer_id=principal.consumer_id)


@mp.route("/personal-packets/<int:packet_id>")
@consumer_required
@mp.arguments(PersonalShareCodeQuerySchema, location="query")
@mp.response(200, PersonalMyPacketSchema)
def one(args: dict[str, Any], packet_id: int) -> service.Seen:
    """One packet: for its sender and friend, or for whoever opens the shared link (`share_code`)."""
    principal = current_consumer()
    return service.packet_for(
        merchant_id=principal.merchant_id, consumer_id=principal.consumer_id, packet_id=packet_id, **args
    )


@mp.route("/personal-packets/<int:packet_id>/claim", methods=["POST"])
@consumer_required
@mp.arguments(PersonalClaimSchema)
@mp.response(200, PersonalPacketSchema)
def claim(body: dict[str, Any], packet_id: int) -> PersonalPacket:
    """Claim a packet sent to you (or, naming nobody, shared with you: `share_code`). It becomes your red
    packet; on a challenge the sender has not confirmed yet it waits (`awaiting_sender`). Refused: the
    sender (403 `own_packet`), someone else (403 `not_your_packet`), twice (409 `already_claimed`), after
    the window (409 `claim_window_closed`), a banned account (403 `account_banned`)."""
    principal = current_consumer()
    packet = service.claim_packet(
        merchant_id=principal.merchant_id, consumer_id=principal.consumer_id, packet_id=packet_id, **body
    )
    commit()
    return packet


@mp.route("/personal-packets/<int:packet_id>/confirm", methods=["POST"])
@consumer_required
@mp.arguments(PersonalConfirmSchema)
@mp.response(200, PersonalPacketSchema)
def confirm(body: dict[str, Any], packet_id: int) -> PersonalPacket:
    """The challenge's outcome (`won`: the friend met it; `lost`: they did not, the money goes back),
    by the sender or the friend only (403 `not_a_party`)."""
    principal = current_consumer()
    packet = service.confirm_outcome(
        merchant_id=principal.merchant_id, consumer_id=principal.consumer_id, packet_id=packet_id, **body
    )
    commit()
    return packet


# ---------------------------------------------------------------- console


@console.route("/personal-packets")
@staff_required()
@console.arguments(PersonalConsoleQuerySchema, location="query")
@console.response(200, PersonalPacketSchema(many=True))
def packets(args: dict[str, Any]) -> list[PersonalPacket]:
    """The merchant's personal red packets, newest first; filter by status, campaign, consumer (sender
    or friend); page with `before`. Any role."""
    return service.list_packets(merchant_id=current_merchant_id(), **args)


@console.route("/campaigns/<int:campaign_id>/personal-terms")
@staff_required()
@console.response(200, PersonalTermsSchema)
def terms(campaign_id: int) -> PersonalTerms:
    """A campaign's personal-packet terms. Any role."""
    return service.get_terms(merchant_id=current_merchant_id(), campaign_id=campaign_id)


@console.route("/campaigns/<int:campaign_id>/personal-terms", methods=["PUT"])
@staff_required(Role.OPERATOR)
@console.arguments(PersonalTermsInSchema)
@console.response(200, PersonalTermsSchema)
def set_terms(body: dict[str, Any], campaign_id: int) -> PersonalTerms:
    """Offer personal red packets in a campaign: the sender's rebate rate on the friend's spend (its
    worst case reserved from the campaign's budget at each claim), amounts, minimum spend, validity,
    claim window. Operator or owner."""
    terms = service.set_terms(
        merchant_id=current_merchant_id(), campaign_id=campaign_id, document=body, actor=current_actor()
    )
    commit()
    return terms
