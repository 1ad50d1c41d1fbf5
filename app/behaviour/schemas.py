from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.behaviour.models import BehaviourKind

MAX_BATCH = 100


class BehaviourEventSchema(Schema):
    type = fields.Enum(BehaviourKind, by_value=True, required=True)
    sku = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    page = fields.String(load_default=None, validate=validate.Length(max=255))
    occurred_at = fields.AwareDateTime(required=True)


class BehaviourBatchSchema(Schema):
    events = fields.List(
        fields.Nested(BehaviourEventSchema), required=True, validate=validate.Length(min=1, max=MAX_BATCH)
    )


class BatchResultSchema(Schema):
    accepted = fields.Integer()
