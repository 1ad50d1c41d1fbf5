from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.core.fields import IdField

# Texts go into WeChat's XML inside CDATA sections: "]]>" would end one early.
_NO_CDATA_END = validate.Regexp(r"^(?!.*\]\]>)", error="must not contain ']]>'")
_URL = validate.URL(schemes={"https"}, require_tld=True)


class QrCodeRequestSchema(Schema):
    purpose = fields.String(required=True, validate=validate.OneOf(["channel", "inviter", "campaign"]))
    channel = fields.String(validate=validate.Length(min=1, max=64))
    inviter_id = IdField()
    campaign_id = IdField()
    expire_seconds = fields.Integer(
        strict=True,
        validate=validate.Range(min=60, max=30 * 86400),
        metadata={"description": "A temporary code's lifetime; omit for a permanent code."},
    )

    @validates_schema
    def _purpose_fields(self, data: dict[str, Any], **_: Any) -> None:
        needed = {"channel": "channel", "inviter": "inviter_id", "campaign": "campaign_id"}[data["purpose"]]
        if data.get(needed) is None:
            raise ValidationError("Required for this purpose.", field_name=needed)


class QrCodeSchema(Schema):
    id = fields.Integer()
    scene = fields.String()
    purpose = fields.String(attribute="purpose.value")
    channel = fields.String(allow_none=True)
    inviter_id = fields.Integer(allow_none=True)
    campaign_id = fields.Integer(allow_none=True)
    permanent = fields.Boolean()
    url = fields.String(metadata={"description": "The text the QR code encodes (see image.png)."})
    expires_at = fields.DateTime(allow_none=True)
    scans = fields.Integer()
    follows = fields.Integer()
    created_at = fields.DateTime()


class _Article(Schema):
    title = fields.String(required=True, validate=[validate.Length(min=1, max=64), _NO_CDATA_END])
    description = fields.String(load_default="", validate=[validate.Length(max=120), _NO_CDATA_END])
    image_url = fields.String(load_default="", validate=lambda value: value == "" or _URL(value) == value)
    url = fields.String(required=True, validate=_URL)


class _TextBody(Schema):
    content = fields.String(required=True, validate=[validate.Length(min=1, max=600), _NO_CDATA_END])


class _NewsBody(Schema):
    articles = fields.List(fields.Nested(_Article), required=True, validate=validate.Length(min=1, max=8))


class ReplyRequestSchema(Schema):
    trigger = fields.String(required=True, validate=validate.OneOf(["subscribe", "keyword"]))
    keyword = fields.String(load_default="", validate=[validate.Length(max=64), _NO_CDATA_END])
    kind = fields.String(required=True, validate=validate.OneOf(["text", "news"]))
    body = fields.Dict(required=True)

    @validates_schema
    def _body_of_kind(self, data: dict[str, Any], **_: Any) -> None:
        schema = _TextBody() if data["kind"] == "text" else _NewsBody()
        errors = schema.validate(data["body"])
        if errors:
            raise ValidationError(errors, field_name="body")
        data["body"] = schema.load(data["body"])
        if data["trigger"] == "keyword" and not data.get("keyword", "").strip():
            raise ValidationError("Required for a keyword reply.", field_name="keyword")


class ReplySchema(Schema):
    id = fields.Integer()
    trigger = fields.String(attribute="trigger.value")
    keyword = fields.String()
    kind = fields.String(attribute="kind.value")
    body = fields.Dict()
    updated_at = fields.DateTime()


class FollowerStatsSchema(Schema):
    following = fields.Integer()
    unfollowed = fields.Integer()
    unlinked = fields.Integer()
