from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.core.fields import IdField
from app.risk.models import HoldStatus
from app.risk.policy import Policy


class RiskHoldSchema(Schema):
    id = fields.Integer()
    consumer_id = fields.Integer()
    order_id = fields.Integer()
    decision_id = fields.Integer(allow_none=True)
    reasons = fields.List(fields.String())
    status = fields.String()
    held_fen = fields.Integer()
    reversed_fen = fields.Integer()
    resolution = fields.String(allow_none=True)
    resolved_by_staff_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()
    resolved_at = fields.DateTime(allow_none=True)
    banned_consumer_ids = fields.List(fields.Integer())


class RiskHoldQuerySchema(Schema):
    status = fields.Enum(HoldStatus, by_value=True, load_default=HoldStatus.HELD)
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))
    before_id = IdField(load_default=None, text=True)


class RiskApproveSchema(Schema):
    note = fields.String(load_default=None, validate=validate.Length(max=255))


class RiskRejectSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=255))


class RiskBanSchema(RiskRejectSchema):
    group = fields.Boolean(load_default=False)


class RiskBulkSchema(Schema):
    hold_ids = fields.List(
        fields.Integer(validate=validate.Range(min=1)),
        required=True,
        validate=validate.Length(min=1, max=200),
    )
    action = fields.String(required=True, validate=validate.OneOf(["approve", "reject", "ban"]))
    reason = fields.String(load_default=None, validate=validate.Length(min=1, max=255))
    group = fields.Boolean(load_default=False)


class RiskBulkResultSchema(Schema):
    done = fields.List(fields.Integer())
    refused = fields.Dict(keys=fields.String(), values=fields.String())


class RiskDecisionSchema(Schema):
    id = fields.Integer()
    consumer_id = fields.Integer()
    action = fields.String()
    kind = fields.String()
    reference = fields.String(allow_none=True)
    outcome = fields.String()
    reasons = fields.List(fields.String())
    scores = fields.Dict()
    created_at = fields.DateTime()


class RiskDecisionQuerySchema(Schema):
    consumer_id = IdField(load_default=None, text=True)
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))


class RiskLinkSchema(Schema):
    consumer_id = fields.Integer()
    kind = fields.String()
    digest = fields.String()


class RiskGroupSchema(Schema):
    group_id = fields.Integer()
    members = fields.List(fields.Integer())
    links = fields.List(fields.Nested(RiskLinkSchema))


class RiskGroupSizeSchema(Schema):
    group_id = fields.Integer()
    size = fields.Integer()


class RiskPolicySchema(Schema):
    """The merchant's whole policy (defaults filled in) and its version."""

    version = fields.Integer()
    policy = fields.Dict()
    overrides = fields.Dict()


class RiskPolicyPatchSchema(Schema):
    policy = fields.Dict(required=True)


class RiskDryRunSchema(Schema):
    policy = fields.Dict(required=True)
    days = fields.Integer(load_default=7, strict=True, validate=validate.Range(min=1, max=90))


class RiskDryRunResultSchema(Schema):
    days = fields.Integer()
    decisions = fields.Integer()
    rewards = fields.Integer()
    would_be = fields.Dict()
    was = fields.Dict()
    changed = fields.Integer()
    reasons = fields.Dict()


class RiskDeviceTokenSchema(Schema):
    device_token = fields.String()


__all__ = ["Policy"]
