"""Audit entries on the wire (before/after were scrubbed of secrets when recorded)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.audit.queries import MAX_PAGE


class AuditQuerySchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_PAGE))
    cursor = fields.String(load_default=None, metadata={"description": "next_cursor of the previous page"})


class AuditEntrySchema(Schema):
    id = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)
    actor_type = fields.String(
        required=True, metadata={"description": "staff, consumer, shop, cli or system"}
    )
    actor_id = fields.String(allow_none=True)
    action = fields.String(required=True)
    target_type = fields.String(required=True)
    target_id = fields.String(allow_none=True)
    before = fields.Dict(allow_none=True)
    after = fields.Dict(allow_none=True)
    ip = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)


class AuditPageSchema(Schema):
    items = fields.List(fields.Nested(AuditEntrySchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)
