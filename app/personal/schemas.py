from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, post_load, validate

from app.core.fields import IdField, MoneyField
from app.core.inputs import ID_MAX
from app.core.money import Money
from app.payments.schemas import PaymentSchema
from app.personal.models import ChallengeKind, Outcome, PersonalPacketStatus

_RATE = validate.Range(min=1, max=10_000, error="Must be 1 to 10000 basis points.")


class PersonalTermsInSchema(Schema):
    """A campaign's terms for personal red packets (the merchant's console)."""

    enabled = fields.Boolean(load_default=True)
    sender_rate_bp = fields.Integer(
        required=True,
        strict=True,
        validate=_RATE,
        metadata={"description": "The sender's rebate on the friend's spend."},
    )
    sender_cap_fen = MoneyField(
        load_default=None, minimum=1, attribute="sender_cap", data_key="sender_cap_fen"
    )
    min_amount_fen = MoneyField(required=True, minimum=1, attribute="min_amount", data_key="min_amount_fen")
    max_amount_fen = MoneyField(
        required=True, minimum=1, maximum=20_000, attribute="max_amount", data_key="max_amount_fen"
    )
    min_spend_fen = MoneyField(
        load_default=Money.zero(),
        attribute="min_spend",
        data_key="min_spend_fen",
        metadata={"description": "Of the friend's order; never below the packet's value + 1 fen."},
    )
    max_order_fen = MoneyField(required=True, minimum=1, attribute="max_order", data_key="max_order_fen")
    valid_days = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=366))
    claim_hours = fields.Integer(load_default=24, strict=True, validate=validate.Range(min=1, max=24 * 7))


class PersonalTermsSchema(Schema):
    campaign_id = fields.Integer()
    enabled = fields.Boolean()
    sender_rate_bp = fields.Integer()
    sender_cap_fen = MoneyField(attribute="sender_cap", allow_none=True)
    min_amount_fen = MoneyField(attribute="min_amount")
    max_amount_fen = MoneyField(attribute="max_amount")
    min_spend_fen = MoneyField(attribute="min_spend")
    max_order_fen = MoneyField(attribute="max_order")
    valid_days = fields.Integer()
    claim_hours = fields.Integer()


class PersonalCreatePacketSchema(Schema):
    campaign_id = IdField(required=True)
    amount_fen = MoneyField(required=True, minimum=1, attribute="amount", data_key="amount_fen")
    message = fields.String(load_default="", validate=validate.Length(max=80))
    friend_id = IdField(
        load_default=None,
        metadata={
            "description": "Only this consumer may claim it; without it, whoever claims with the share code."
        },
    )
    challenge = fields.String(
        load_default=ChallengeKind.NONE.value, validate=validate.OneOf([c.value for c in ChallengeKind])
    )
    challenge_target = fields.Integer(
        load_default=None,
        strict=True,
        validate=validate.Range(min=1, max=1_000_000),
        metadata={"description": "Steps."},
    )
    challenge_deadline = fields.AwareDateTime(load_default=None)

    @post_load
    def _kinds(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        data["challenge"] = ChallengeKind(data["challenge"])
        return data


class PersonalClaimSchema(Schema):
    share_code = fields.String(load_default=None, validate=validate.Length(min=1, max=32))


class PersonalShareCodeQuerySchema(Schema):
    share_code = fields.String(load_default=None, validate=validate.Length(min=1, max=32))


class PersonalConfirmSchema(Schema):
    outcome = fields.String(required=True, validate=validate.OneOf([o.value for o in Outcome]))

    @post_load
    def _outcome(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        data["outcome"] = Outcome(data["outcome"])
        return data


class PersonalPacketSchema(Schema):
    id = fields.Integer()
    campaign_id = fields.Integer()
    sender_id = fields.Integer()
    friend_id = fields.Integer(allow_none=True)
    amount_fen = MoneyField(attribute="amount")
    message = fields.String()
    status = fields.String(attribute="status.value")
    challenge = fields.String(attribute="challenge.value")
    challenge_target = fields.Integer(allow_none=True)
    challenge_deadline = fields.DateTime(allow_none=True)
    sender_outcome = fields.String(attribute="sender_outcome.value", allow_none=True)
    friend_outcome = fields.String(attribute="friend_outcome.value", allow_none=True)
    sender_rate_bp = fields.Integer()
    min_spend_fen = MoneyField(attribute="min_spend")
    red_packet_id = fields.Integer(allow_none=True)
    claim_deadline = fields.DateTime(allow_none=True)
    funded_at = fields.DateTime(allow_none=True)
    claimed_at = fields.DateTime(allow_none=True)
    refunded_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class PersonalMyPacketSchema(PersonalPacketSchema):
    role = fields.String(metadata={"description": "sent or received"})
    share_code = fields.String(
        allow_none=True, metadata={"description": "The sender's only: put it in the link they share."}
    )


class PersonalCreatedSchema(Schema):
    packet = fields.Nested(PersonalPacketSchema)
    share_code = fields.String(attribute="packet.share_code")
    payment = fields.Nested(PaymentSchema)


class PersonalConsoleQuerySchema(Schema):
    status = fields.String(
        load_default=None, validate=validate.OneOf([s.value for s in PersonalPacketStatus])
    )
    campaign_id = IdField(text=True, load_default=None)
    consumer_id = IdField(text=True, load_default=None)
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    before = IdField(text=True, load_default=None, validate=validate.Range(min=1, max=ID_MAX))

    @post_load
    def _status(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if data["status"] is not None:
            data["status"] = PersonalPacketStatus(data["status"])
        return data
