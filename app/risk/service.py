"""The console's risk operations: the policy (read, change, dry run), groups and decisions."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.audit.service import Actor, record_audit
from app.core.db import utcnow
from app.core.errors import Conflict, InvalidInput
from app.core.guards import guarded_update
from app.extensions import db
from app.risk.engine import forget_policy, policy_of
from app.risk.links import group_of, largest_groups, links_of
from app.risk.models import RiskPolicy
from app.risk.policy import Policy, overrides, policy_from
from app.risk.replay import dry_run


def _candidate(changes: dict[str, Any], base: Policy) -> Policy:
    try:
        return policy_from({**overrides(base), **changes})
    except ValidationError as exc:
        fields = {".".join(str(p) for p in err["loc"]) or "policy": [err["msg"]] for err in exc.errors()}
        raise InvalidInput("invalid risk policy", details={"fields": {"policy": fields}}) from None


def get_policy(*, merchant_id: int) -> dict[str, Any]:
    policy, version = policy_of(merchant_id)
    return {"version": version, "policy": policy.model_dump(mode="json"), "overrides": overrides(policy)}


def update_policy(*, merchant_id: int, changes: dict[str, Any], actor: Actor) -> dict[str, Any]:
    """Change some settings of the merchant's policy (the rest keep their values); a new version."""
    forget_policy(merchant_id)
    current, _ = policy_of(merchant_id)
    policy = _candidate(changes, current)
    row = db.session.scalar(select(RiskPolicy).where(RiskPolicy.merchant_id == merchant_id))
    before = overrides(current)
    # The guard on every engine: the first version is an insert (merchant_id is unique), each later one a
    # conditional UPDATE from the version read; a concurrent change makes this one a 409, written nothing.
    changed_meanwhile = Conflict(
        "the risk policy changed meanwhile; read it again", details={"merchant_id": merchant_id}
    )
    if row is None:
        row = RiskPolicy(merchant_id=merchant_id, settings=overrides(policy), version=1, updated_at=utcnow())
        try:
            with db.session.begin_nested():
                db.session.add(row)
        except IntegrityError:
            raise changed_meanwhile from None
    elif not guarded_update(
        RiskPolicy,
        row.id,
        RiskPolicy.version == row.version,
        settings=overrides(policy),
        version=row.version + 1,
        updated_at=utcnow(),
    ):
        raise changed_meanwhile
    db.session.refresh(row)
    record_audit(
        actor=actor,
        action="risk_policy.update",
        target_type="risk_policy",
        target_id=row.id,
        merchant_id=merchant_id,
        before=before,
        after=overrides(policy) | {"version": row.version},
    )
    forget_policy(merchant_id)
    return {"version": row.version, "policy": policy.model_dump(mode="json"), "overrides": overrides(policy)}


def run_dry_run(*, merchant_id: int, changes: dict[str, Any], days: int) -> dict[str, Any]:
    current, _ = policy_of(merchant_id)
    return dry_run(merchant_id=merchant_id, policy=_candidate(changes, current), days=days)


def consumer_group(*, merchant_id: int, consumer_id: int) -> dict[str, Any]:
    group_id, members = group_of(merchant_id=merchant_id, consumer_id=consumer_id)
    return {
        "group_id": group_id,
        "members": members,
        "links": [
            {"consumer_id": link.consumer_id, "kind": link.kind.value, "digest": link.digest[:12]}
            for link in links_of(merchant_id=merchant_id, consumer_ids=members)
        ],
    }


def groups(*, merchant_id: int) -> list[dict[str, int]]:
    return [{"group_id": g, "size": n} for g, n in largest_groups(merchant_id=merchant_id)]
