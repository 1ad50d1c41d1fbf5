"""The error envelope as a marshmallow schema, so ``/openapi.json`` declares the body errors really have."""

from __future__ import annotations

from marshmallow import Schema, fields


class ErrorSchema(Schema):
    code = fields.String(
        required=True, metadata={"description": "stable, snake_case: not_found, validation_error, …"}
    )
    message = fields.String(required=True, metadata={"description": "for people; may change"})
    details = fields.Dict(
        required=True,
        metadata={
            "description": "machine-readable context; for validation_error, fields: {name: [messages]}"
        },
    )


class ErrorEnvelopeSchema(Schema):
    """Every error answer of the JSON API: ``{"error": {"code", "message", "details"}}``."""

    error = fields.Nested(ErrorSchema, required=True)
