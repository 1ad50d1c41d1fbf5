from __future__ import annotations

from marshmallow import Schema, fields


class LivenessSchema(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})


class CheckSchema(Schema):
    ok = fields.Boolean(required=True)
    detail = fields.String()


class ReadinessSchema(Schema):
    status = fields.String(required=True, metadata={"description": "ready or unready"})
    checks = fields.Dict(keys=fields.String(), values=fields.Nested(CheckSchema), required=True)
    worker_heartbeat = fields.DateTime(allow_none=True, metadata={"description": "informational"})
