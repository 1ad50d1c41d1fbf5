"""Console session and staff management on the wire."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.auth.principals import Role


class LoginSchema(Schema):
    email = fields.String(required=True, validate=validate.Length(min=3, max=254))
    # No policy check here: a too-short password is simply a wrong one.
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=256))


class StaffSchema(Schema):
    id = fields.Integer(required=True)
    email = fields.String(required=True)
    display_name = fields.String(required=True)
    is_platform_admin = fields.Boolean(required=True)


class MembershipSchema(Schema):
    merchant = fields.String(required=True, metadata={"description": "merchant slug (X-Hongli-Merchant)"})
    merchant_name = fields.String(required=True)
    role = fields.Enum(Role, by_value=True, required=True)


class SessionSchema(Schema):
    staff = fields.Nested(StaffSchema, required=True)
    csrf_token = fields.String(
        required=True, metadata={"description": "send as X-CSRF-Token on every POST/PUT/PATCH/DELETE"}
    )
    memberships = fields.List(fields.Nested(MembershipSchema), required=True)


class MemberSchema(Schema):
    staff_id = fields.Integer(required=True)
    email = fields.String(required=True)
    display_name = fields.String(required=True)
    role = fields.Enum(Role, by_value=True, required=True)
    member_since = fields.DateTime(required=True)
    last_login_at = fields.DateTime(allow_none=True)
    disabled = fields.Boolean(required=True)


class MemberListSchema(Schema):
    items = fields.List(fields.Nested(MemberSchema), required=True)


class AddMemberSchema(Schema):
    email = fields.String(required=True, validate=validate.Length(min=3, max=254))
    role = fields.Enum(Role, by_value=True, required=True)


class ChangeRoleSchema(Schema):
    role = fields.Enum(Role, by_value=True, required=True)
