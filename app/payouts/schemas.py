from __future__ import annotations

from marshmallow import Schema, fields

from app.core.fields import MoneyField
from app.payouts.models import PayoutStatus


class PayoutQuerySchema(Schema):
    status = fields.List(fields.Enum(PayoutStatus, by_value=True), load_default=list)


class PayoutSchema(Schema):
    id = fields.Integer()
    consumer_id = fields.Integer()
    source_type = fields.String()
    source_id = fields.Integer()
    rail = fields.String(attribute="rail.value")
    bill_no = fields.String()
    attempt = fields.Integer()
    amount_fen = MoneyField(attribute="amount")
    fee_fen = MoneyField(attribute="fee")
    status = fields.String(attribute="status.value")
    wechat_state = fields.String(allow_none=True)
    failure_code = fields.String(allow_none=True)
    failure_reason = fields.String(allow_none=True)
    submit_calls = fields.Integer()
    query_calls = fields.Integer()
    next_attempt_at = fields.DateTime()
    claimed_until = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    history = fields.List(fields.Dict())
