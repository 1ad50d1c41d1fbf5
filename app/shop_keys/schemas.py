"""Shop keys on the wire: the secret appears only in the creation/rotation answer."""

from __future__ import annotations

from marshmallow import Schema, fields, validate


class CreateShopKeySchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=80))


class ShopKeySchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    display_prefix = fields.String(required=True, metadata={"description": "the key's first characters"})
    created_at = fields.DateTime(required=True)
    last_used_at = fields.DateTime(
        allow_none=True, metadata={"description": "refreshed at most once a minute"}
    )
    revoked_at = fields.DateTime(allow_none=True)


class IssuedShopKeySchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    key = fields.String(required=True, metadata={"description": "shown this once; only a digest is stored"})
    display_prefix = fields.String(required=True)
    created_at = fields.DateTime(required=True)


class ShopKeyListSchema(Schema):
    items = fields.List(fields.Nested(ShopKeySchema), required=True)


class WhoAmISchema(Schema):
    merchant = fields.String(required=True, metadata={"description": "merchant slug"})
    key = fields.String(required=True, metadata={"description": "display prefix of the key used"})
