from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.core.fields import MoneyField
from app.payouts.models import PayoutStatus

STUCK = "stuck"  # not a state: submitting/unknown past payouts.unknown_query_deadline_minutes


class PayoutQuerySchema(Schema):
    status = fields.List(
        fields.String(validate=validate.OneOf([*(s.value for s in PayoutStatus), STUCK])),
        load_default=list,
    )


class ResolveSchema(Schema):
    outcome = fields.String(required=True, validate=validate.OneOf(["succeeded", "failed"]))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=255))


class PayoutSchema(Schema):
    id = fields.Integer()
    consumer_id = fields.Integer()
    source_type = fields.String()
    source_id = fields.Integer()
    rail = fields.String(attribute="rail.value")
    group_size = fields.Integer(
        allow_none=True, metadata={"description": "A fission red packet (sendgroupredpack) of this many."}
    )
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


class PayoutCapabilitySchema(Schema):
    product = fields.String(metadata={"description": "cash_red_packet: sendredpack / sendgroupredpack."})
    enabled = fields.Boolean(
        allow_none=True, metadata={"description": "False once WeChat refused it; None: never refused."}
    )
    reason = fields.String(allow_none=True)
    wechat_code = fields.String(allow_none=True)
    detected_at = fields.DateTime(allow_none=True)
