from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate


class MpLoginSchema(Schema):
    appid = fields.String(required=True, validate=validate.Regexp(r"^wx[0-9a-zA-Z]{16}$"))
    code = fields.String(required=True, validate=validate.Length(min=1, max=128))


class ConsumerSchema(Schema):
    id = fields.Integer(required=True)
    nickname = fields.String(allow_none=True)
    avatar_url = fields.String(allow_none=True)
    phone_masked = fields.Method("_phone", metadata={"description": "e.g. 138****8000"})
    has_phone = fields.Method("_has_phone")

    def _phone(self, consumer: Any) -> str | None:
        phone = consumer.phone
        return f"{phone[:3]}****{phone[-4:]}" if phone and len(phone) >= 7 else None

    def _has_phone(self, consumer: Any) -> bool:
        return bool(consumer.phone)


class LoginResultSchema(Schema):
    token = fields.String(required=True, metadata={"description": "Bearer token; send with X-WX-AppId"})
    expires_in = fields.Integer(required=True, metadata={"description": "seconds"})
    user = fields.Nested(ConsumerSchema, attribute="consumer", required=True)


class EncryptedDataSchema(Schema):
    encrypted_data = fields.String(required=True, validate=validate.Length(min=16, max=8192))
    iv = fields.String(required=True, validate=validate.Length(min=16, max=64))


class PhoneCodeSchema(Schema):
    code = fields.String(
        required=True,
        validate=validate.Regexp(r"^[A-Za-z0-9_-]{8,128}$"),
        metadata={"description": "The code of the getPhoneNumber button's event (e.detail.code)."},
    )


class OAuthStartSchema(Schema):
    appid = fields.String(required=True, validate=validate.Regexp(r"^wx[0-9a-zA-Z]{16}$"))
    scope = fields.String(
        load_default="snsapi_base", validate=validate.OneOf(["snsapi_base", "snsapi_userinfo"])
    )
    next = fields.String(load_default="/", validate=validate.Length(max=1024))


class OAuthCallbackSchema(Schema):
    code = fields.String(load_default=None, validate=validate.Length(max=128))
    state = fields.String(required=True, validate=validate.Length(max=128))
