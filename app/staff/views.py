"""``/api/console/v1/session`` (console login) and ``/api/console/v1/staff`` (who works here)."""

from __future__ import annotations

from typing import Any

from app.auth.guards import current_actor, current_merchant_id, current_staff, public, staff_required
from app.auth.principals import Role
from app.core.api import Blueprint
from app.core.error_schemas import ErrorEnvelopeSchema
from app.core.tx import commit
from app.staff.schemas import (
    AddMemberSchema,
    ChangeRoleSchema,
    LoginSchema,
    MemberListSchema,
    MemberSchema,
    SessionSchema,
)
from app.staff.service import MemberView, add_member, change_member_role, list_members, remove_member
from app.staff.sessions import (
    ConsoleSession,
    close_session,
    describe_session,
    open_session,
    revoke_all_sessions,
)

blp = Blueprint(
    "console_staff",
    __name__,
    url_prefix="/api/console/v1",
    description="Console login (cookie + X-CSRF-Token) and staff roles per merchant.",
)


@blp.route("/session", methods=["POST"])
@public
@blp.arguments(LoginSchema)
@blp.response(200, SessionSchema)
@blp.alt_response(
    401,
    schema=ErrorEnvelopeSchema,
    description="Wrong email or password (the same answer for an unknown email).",
)
@blp.alt_response(
    429,
    schema=ErrorEnvelopeSchema,
    description="Rate limited or locked after failed logins; see Retry-After.",
)
def log_in(data: dict[str, Any]) -> ConsoleSession:
    """Log in with email and password; sets the session cookie and returns the CSRF token."""
    result = open_session(email=data["email"], password=data["password"])
    commit()
    return result


@blp.route("/session", methods=["GET"])
@staff_required(merchant_scoped=False)
@blp.response(200, SessionSchema)
def get_session() -> ConsoleSession:
    """The logged-in staff member, the CSRF token and the merchants where they hold a role."""
    return describe_session(current_staff())


@blp.route("/session", methods=["DELETE"])
@staff_required(merchant_scoped=False)
@blp.response(204)
def log_out() -> None:
    """Log this browser out."""
    close_session()


@blp.route("/session/revoke-all", methods=["POST"])
@staff_required(merchant_scoped=False)
@blp.response(204)
def revoke_all() -> None:
    """End every session of this account, on every device (this one too)."""
    revoke_all_sessions(current_staff())
    commit()


@blp.route("/staff", methods=["GET"])
@staff_required()
@blp.response(200, MemberListSchema)
def list_staff() -> dict[str, list[MemberView]]:
    """Everyone with a role at the merchant (any role may look)."""
    return {"items": list_members(merchant_id=current_merchant_id())}


@blp.route("/staff", methods=["POST"])
@staff_required(Role.OWNER)
@blp.arguments(AddMemberSchema)
@blp.response(201, MemberSchema)
def add_staff(data: dict[str, Any]) -> MemberView:
    """Give an existing staff account (created with ``flask staff create``) a role here. Owner only."""
    member = add_member(
        merchant_id=current_merchant_id(), email=data["email"], role=data["role"], actor=current_actor()
    )
    commit()
    return member


@blp.route("/staff/<int:staff_id>", methods=["PATCH"])
@staff_required(Role.OWNER)
@blp.arguments(ChangeRoleSchema)
@blp.response(200, MemberSchema)
def change_role(data: dict[str, Any], staff_id: int) -> MemberView:
    """Change a member's role; the last owner cannot be demoted. Owner only."""
    member = change_member_role(
        merchant_id=current_merchant_id(), staff_id=staff_id, role=data["role"], actor=current_actor()
    )
    commit()
    return member


@blp.route("/staff/<int:staff_id>", methods=["DELETE"])
@staff_required(Role.OWNER)
@blp.response(204)
def remove_staff(staff_id: int) -> None:
    """Remove a member from the merchant; the last owner cannot be removed. Owner only."""
    remove_member(merchant_id=current_merchant_id(), staff_id=staff_id, actor=current_actor())
    commit()
