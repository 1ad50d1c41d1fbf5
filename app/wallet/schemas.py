from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.core.fields import IdField, MoneyField
from app.personal.schemas import PersonalMyPacketSchema


class WalletSchema(Schema):
    pending_fen = MoneyField(attribute="pending")
    available_fen = MoneyField(attribute="available")
    withdrawing_fen = MoneyField(attribute="withdrawing")
    debt_fen = MoneyField(attribute="debt")


class TimelineQuerySchema(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    before = IdField(text=True, load_default=None)


class LineSchema(Schema):
    id = fields.Integer()
    bucket = fields.String()
    amount_fen = MoneyField(attribute="amount", minimum=None)
    at = fields.DateTime()
    reason = fields.String()
    explanation = fields.String()


class TimelineSchema(Schema):
    lines = fields.List(fields.Nested(LineSchema))
    next_before = fields.Integer(allow_none=True)
    personal_packets = fields.List(
        fields.Nested(PersonalMyPacketSchema),
        metadata={"description": "First page only: personal red packets sent and received, newest first."},
    )


class RedPacketSchema(Schema):
    id = fields.Integer()
    face_value_fen = MoneyField(attribute="face_value")
    min_spend_fen = MoneyField(attribute="min_spend")
    status = fields.String(attribute="status.value")
    valid_from = fields.DateTime()
    valid_until = fields.DateTime()
    order_id = fields.Integer(allow_none=True)
