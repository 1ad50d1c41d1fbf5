"""Risk control over HTTP: the console's review queue, policy, dry run, groups and decisions (JSON), and
the mini-program's device token.

Roles: a reviewer (or the owner) reads and resolves the queue; the policy is the owner's; viewers,
operators and finance are refused the queue's actions.
"""

from __future__ import annotations

from typing import Any

from app.auth.guards import current_actor, current_merchant_id, current_staff, public, staff_required
from app.auth.principals import Role
from app.core.api import Blueprint
from app.core.ratelimit import hit
from app.core.tx import commit
from app.risk import review, service
from app.risk.clients import current_client, issue_device_token
from app.risk.models import RiskDecision
from app.risk.schemas import (
    RiskApproveSchema,
    RiskBanSchema,
    RiskBulkResultSchema,
    RiskBulkSchema,
    RiskDecisionQuerySchema,
    RiskDecisionSchema,
    RiskDeviceTokenSchema,
    RiskDryRunResultSchema,
    RiskDryRunSchema,
    RiskGroupSchema,
    RiskGroupSizeSchema,
    RiskHoldQuerySchema,
    RiskHoldSchema,
    RiskPolicyPatchSchema,
    RiskPolicySchema,
    RiskRejectSchema,
)

console = Blueprint(
    "console_risk",
    __name__,
    url_prefix="/api/console/v1/risk",
    description="Risk control: the review queue of held rewards, linked accounts, decisions, policy, dry run.",
)
mp = Blueprint(
    "mp_risk", __name__, url_prefix="/api/mp/v1/risk", description="The device token for risk control."
)


def _reviewer() -> review.Reviewer:
    return review.Reviewer(current_actor(), current_staff().staff_id)


@console.route("/holds")
@staff_required(Role.REVIEWER)
@console.arguments(RiskHoldQuerySchema, location="query")
@console.response(200, RiskHoldSchema(many=True))
def holds(args: dict[str, Any]) -> list[dict[str, Any]]:
    """Held rewards (default: still held), newest first, with their reasons. Reviewer or owner."""
    return review.list_holds(merchant_id=current_merchant_id(), **args)


@console.route("/holds/<int:hold_id>")
@staff_required(Role.REVIEWER)
@console.response(200, RiskHoldSchema)
def hold(hold_id: int) -> dict[str, Any]:
    """One hold. Reviewer or owner."""
    return review.get_hold(merchant_id=current_merchant_id(), hold_id=hold_id)


@console.route("/holds/<int:hold_id>/approve", methods=["POST"])
@staff_required(Role.REVIEWER, while_suspended=True)
@console.arguments(RiskApproveSchema)
@console.response(200, RiskHoldSchema)
def approve(body: dict[str, Any], hold_id: int) -> dict[str, Any]:
    """Release a held reward to settlement. Reviewer or owner; audited."""
    result = review.approve(
        merchant_id=current_merchant_id(), hold_id=hold_id, reviewer=_reviewer(), note=body["note"]
    )
    commit()
    return result


@console.route("/holds/<int:hold_id>/reject", methods=["POST"])
@staff_required(Role.REVIEWER, while_suspended=True)
@console.arguments(RiskRejectSchema)
@console.response(200, RiskHoldSchema)
def reject(body: dict[str, Any], hold_id: int) -> dict[str, Any]:
    """Reverse a held reward in the ledger (to the campaign budget) with a reason. Reviewer or owner."""
    result = review.reject(
        merchant_id=current_merchant_id(), hold_id=hold_id, reviewer=_reviewer(), reason=body["reason"]
    )
    commit()
    return result


@console.route("/holds/<int:hold_id>/ban", methods=["POST"])
@staff_required(Role.REVIEWER, while_suspended=True)
@console.arguments(RiskBanSchema)
@console.response(200, RiskHoldSchema)
def ban(body: dict[str, Any], hold_id: int) -> dict[str, Any]:
    """Reject the hold and ban its consumer (``group``: their whole linked group). Reviewer or owner."""
    result = review.ban(
        merchant_id=current_merchant_id(),
        hold_id=hold_id,
        reviewer=_reviewer(),
        reason=body["reason"],
        group=body["group"],
    )
    commit()
    return result


@console.route("/holds/bulk", methods=["POST"])
@staff_required(Role.REVIEWER, while_suspended=True)
@console.arguments(RiskBulkSchema)
@console.response(200, RiskBulkResultSchema)
def bulk(body: dict[str, Any]) -> dict[str, Any]:
    """One action on many holds; those already resolved are listed in ``refused``. Reviewer or owner."""
    result = review.bulk(merchant_id=current_merchant_id(), reviewer=_reviewer(), **body)
    commit()
    return result


@console.route("/decisions")
@staff_required(Role.REVIEWER)
@console.arguments(RiskDecisionQuerySchema, location="query")
@console.response(200, RiskDecisionSchema(many=True))
def decisions(args: dict[str, Any]) -> list[RiskDecision]:
    """The engine's latest decisions (optionally of one consumer) with reasons and scores."""
    return review.decisions(merchant_id=current_merchant_id(), **args)


@console.route("/consumers/<int:consumer_id>/group")
@staff_required(Role.REVIEWER)
@console.response(200, RiskGroupSchema)
def consumer_group(consumer_id: int) -> dict[str, Any]:
    """A consumer's linked-account group: its members and the links joining them (digests, shortened)."""
    return service.consumer_group(merchant_id=current_merchant_id(), consumer_id=consumer_id)


@console.route("/groups")
@staff_required(Role.REVIEWER)
@console.response(200, RiskGroupSizeSchema(many=True))
def groups() -> list[dict[str, int]]:
    """The merchant's linked groups of two or more accounts, largest first."""
    return service.groups(merchant_id=current_merchant_id())


@console.route("/policy")
@staff_required(Role.REVIEWER)
@console.response(200, RiskPolicySchema)
def policy() -> dict[str, Any]:
    """The merchant's risk policy (seed defaults for whatever it did not change)."""
    return service.get_policy(merchant_id=current_merchant_id())


@console.route("/policy", methods=["PATCH"])
@staff_required(Role.OWNER)
@console.arguments(RiskPolicyPatchSchema)
@console.response(200, RiskPolicySchema)
def patch_policy(body: dict[str, Any]) -> dict[str, Any]:
    """Change settings of the policy (a new version, audited). Owner only."""
    result = service.update_policy(
        merchant_id=current_merchant_id(), changes=body["policy"], actor=current_actor()
    )
    commit()
    return result


@console.route("/dry-run", methods=["POST"])
@staff_required(Role.REVIEWER, while_suspended=True)
@console.arguments(RiskDryRunSchema)
@console.response(200, RiskDryRunResultSchema)
def dry_run(body: dict[str, Any]) -> dict[str, Any]:
    """Replay the last ``days`` days through the policy with ``policy``'s changes; nothing is written."""
    return service.run_dry_run(merchant_id=current_merchant_id(), changes=body["policy"], days=body["days"])


@mp.route("/device", methods=["POST"])
@public
@mp.response(201, RiskDeviceTokenSchema)
def device() -> tuple[dict[str, str], int]:
    """A device token for ``X-Hongli-Device`` (kept by the mini-program; at most 20 per IP an hour)."""
    hit(f"risk-device:{current_client().ip or '-'}", limit=20, window_seconds=3600)
    return {"device_token": issue_device_token()}, 201
