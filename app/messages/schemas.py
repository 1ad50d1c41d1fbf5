from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.messages.models import Channel, MessageKind

_TEMPLATE_ID = validate.Regexp(r"^[A-Za-z0-9_-]{1,64}$")


class ConsentRequestSchema(Schema):
    results = fields.Dict(
        keys=fields.String(validate=_TEMPLATE_ID),
        values=fields.String(validate=validate.Length(max=16)),
        required=True,
        validate=validate.Length(max=20),
        metadata={"description": "wx.requestSubscribeMessage's answer: template id → accept / reject / …"},
    )


class ConsentSchema(Schema):
    held = fields.Dict(keys=fields.String(), values=fields.Integer())


class TemplateRequestSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in MessageKind]))
    channel = fields.String(required=True, validate=validate.OneOf([c.value for c in Channel]))
    template_id = fields.String(required=True, validate=_TEMPLATE_ID)
    fields_ = fields.Dict(
        data_key="fields",
        keys=fields.String(validate=validate.Regexp(r"^[a-z_]+[0-9]{1,2}$")),
        values=fields.String(validate=validate.Length(min=1, max=32)),
        required=True,
        validate=validate.Length(min=1, max=10),
        metadata={"description": "WeChat's field key (e.g. amount1) → our value (title, amount, time, …)."},
    )
    page = fields.String(load_default="", validate=validate.Length(max=255))


class TemplateSchema(Schema):
    id = fields.Integer()
    kind = fields.String(attribute="kind.value")
    channel = fields.String(attribute="channel.value")
    template_id = fields.String()
    fields_ = fields.Dict(attribute="fields", data_key="fields")
    page = fields.String()


class MessageSchema(Schema):
    id = fields.Integer()
    consumer_id = fields.Integer()
    kind = fields.String(attribute="kind.value")
    status = fields.String(attribute="status.value")
    channel = fields.Function(lambda m: m.channel.value if m.channel else None)
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    created_at = fields.DateTime()
    sent_at = fields.DateTime(allow_none=True)
