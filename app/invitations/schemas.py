from __future__ import annotations

from marshmallow import Schema, fields, validate


class InviteSchema(Schema):
    code = fields.String(required=True, metadata={"description": "8 characters, no look-alikes (0/O, 1/I/L)"})
    share_path = fields.String(
        required=True, metadata={"description": "mini-program path for `onShareAppMessage`"}
    )
    share_url = fields.String(required=True, metadata={"description": "the same invitation as an H5 link"})
    qr_png_url = fields.String(
        required=True, metadata={"description": "PNG QR code of `share_path` (needs the consumer token)"}
    )


class BindSchema(Schema):
    code = fields.String(required=True, validate=validate.Regexp(r"^\s*[A-Za-z0-9]{4,32}\s*$"))


class BindingSchema(Schema):
    code = fields.String(required=True)
    bound_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(
        required=True, metadata={"description": "orders paid after this are no longer attributed"}
    )
