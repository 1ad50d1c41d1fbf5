from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.core.fields import MoneyField
from app.withdrawals.models import WithdrawalStatus


class WithdrawalRequestSchema(Schema):
    amount_fen = MoneyField(required=True, minimum=1, data_key="amount_fen", attribute="amount")
    idempotency_key = fields.String(
        required=True, validate=[validate.Length(min=1, max=64), validate.Regexp(r"^[0-9A-Za-z_\-:.]+$")]
    )


class HistoryItemSchema(Schema):
    at = fields.String()
    event = fields.String()
    status = fields.String()
    state = fields.String(allow_none=True)


class ConfirmSchema(Schema):
    mch_id = fields.String()
    appid = fields.String()
    package_info = fields.String()


class WithdrawalSchema(Schema):
    id = fields.Integer()
    consumer_id = fields.Integer()
    amount_fen = fields.Integer()
    fee_fen = fields.Integer()
    net_fen = fields.Integer()
    status = fields.String(
        metadata={
            "description": "pending_review, rejected, paying, awaiting_confirmation (use ``confirm``), "
            "paid, returned (see ``reason``)"
        }
    )
    reason = fields.String(allow_none=True)
    rail = fields.String(allow_none=True)
    confirm = fields.Nested(ConfirmSchema, allow_none=True)
    created_at = fields.DateTime()
    history = fields.List(fields.Nested(HistoryItemSchema))


class ConsoleQuerySchema(Schema):
    status = fields.Enum(WithdrawalStatus, by_value=True, load_default=None)


class RejectSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=255))
