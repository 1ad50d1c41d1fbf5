"""The risk console API's edges: bad input refused with the envelope and nothing changed, the policy
owner-only and audited, decisions and groups readable, every operation in the OpenAPI document."""

from __future__ import annotations

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEntry
from app.risk.models import RiskPolicy
from tests.console_client import Console
from tests.payments.conftest import Shop
from tests.risk.conftest import device_token, person


def test_the_policy_is_the_owners_validated_versioned_and_audited(
    shop: Shop, campaign: int, reviewer: Console, db_session: Session
) -> None:
    read = reviewer.get("/api/console/v1/risk/policy")
    assert read.status_code == 200
    assert (
        read.json["policy"]["ip_claims_per_day"] == 5
        and read.json["policy"]["ip_min_interval_seconds"] == 600
    )
    assert (
        reviewer.patch("/api/console/v1/risk/policy", json={"policy": {"ip_claims_per_day": 9}}).status_code
        == 403
    )

    from app.auth.principals import Role
    from tests.factories import make_staff

    owner = Console(reviewer.client, shop.merchant.slug).login(
        make_staff(merchant=shop.merchant, role=Role.OWNER).email
    )
    version = read.json["version"]
    for bad in (
        {"ip_claims_per_day": -1},
        {"no_such_setting": 1},
        {"ip_min_interval_seconds": "soon"},
        {"link_by": ["device", "shoe size"]},
        {"virtual_prefixes": ["170", "abc"]},
    ):
        refused = owner.patch("/api/console/v1/risk/policy", json={"policy": bad})
        assert refused.status_code == 422, refused.json
        assert refused.json["error"]["code"] == "validation_error"
    assert owner.get("/api/console/v1/risk/policy").json["version"] == version
    changed = owner.patch("/api/console/v1/risk/policy", json={"policy": {"ip_claims_per_day": 9}})
    assert changed.status_code == 200, changed.json
    assert (changed.json["version"], changed.json["overrides"]) == (
        version + 1,
        {"enforce": True, "ip_claims_per_day": 9},
    )
    stored = db_session.scalar(select(RiskPolicy).where(RiskPolicy.merchant_id == shop.merchant.id))
    assert stored is not None and stored.settings == {"enforce": True, "ip_claims_per_day": 9}
    audit = db_session.scalars(select(AuditEntry).where(AuditEntry.action == "risk_policy.update")).all()
    assert audit[-1].after == {"enforce": True, "ip_claims_per_day": 9, "version": version + 1}


def test_bad_review_input_changes_nothing(
    shop: Shop, campaign: int, reviewer: Console, db_session: Session
) -> None:
    carol = person(shop, "carol", ip="198.51.100.30", device=None)
    carol.order("CAROL-1", 20000)
    holds = reviewer.get("/api/console/v1/risk/holds").json
    assert len(holds) == 1
    hold_id = holds[0]["id"]
    for path, body in (
        (f"/api/console/v1/risk/holds/{hold_id}/reject", {}),
        (f"/api/console/v1/risk/holds/{hold_id}/reject", {"reason": ""}),
        (f"/api/console/v1/risk/holds/{hold_id}/ban", {"reason": "x" * 256}),
        ("/api/console/v1/risk/holds/bulk", {"hold_ids": list(range(1, 202)), "action": "approve"}),
        ("/api/console/v1/risk/holds/bulk", {"hold_ids": [hold_id], "action": "delete"}),
    ):
        answer = reviewer.post(path, json=body)
        assert answer.status_code == 422, (path, answer.json)
        assert answer.json["error"]["code"] == "validation_error"
    assert reviewer.post("/api/console/v1/risk/holds/999999999/approve", json={}).status_code == 404
    assert reviewer.get("/api/console/v1/risk/holds").json[0]["status"] == "held"


def test_another_merchants_hold_is_not_found(
    shop: Shop, campaign: int, client: FlaskClient, db_session: Session
) -> None:
    from app.auth.principals import Role
    from tests.factories import make_merchant, make_staff

    carol = person(shop, "carol", ip="198.51.100.30", device=None)
    carol.order("CAROL-1", 20000)
    other = make_merchant("other-shop")
    staff = make_staff("rev@other.test", merchant=other, role=Role.REVIEWER)
    console = Console(client, "other-shop").login(staff.email)
    from app.risk.models import RiskHold

    hold = db_session.scalar(select(RiskHold))
    assert hold is not None
    assert console.post(f"/api/console/v1/risk/holds/{hold.id}/approve", json={}).status_code == 404
    assert console.get("/api/console/v1/risk/holds").json == []


def test_decisions_and_groups_are_readable(shop: Shop, campaign: int, reviewer: Console) -> None:
    phone = device_token(shop.client)
    a = person(shop, "ann", ip="198.51.100.70", device=phone)
    b = person(shop, "ben", ip="198.51.100.71", device=phone)
    a.browse()
    a.order("ANN-1", 20000)
    b.browse()
    b.order("BEN-1", 20000)
    decisions = reviewer.get(f"/api/console/v1/risk/decisions?consumer_id={b.consumer_id}")
    assert decisions.status_code == 200
    assert [(d["action"], d["kind"], d["outcome"]) for d in decisions.json] == [("reward", "order", "allow")]
    groups = reviewer.get("/api/console/v1/risk/groups").json
    assert groups == [{"group_id": min(a.consumer_id, b.consumer_id), "size": 2}]
    assert reviewer.get("/api/console/v1/risk/decisions?limit=0").status_code == 422


def test_device_tokens_are_rate_limited_per_ip(client: FlaskClient) -> None:
    answers = [client.post("/api/mp/v1/risk/device").status_code for _ in range(21)]
    assert answers == [201] * 20 + [429]


def test_every_risk_operation_is_in_the_openapi_document(client: FlaskClient) -> None:
    paths = client.get("/openapi.json").json["paths"]
    assert {
        "/api/console/v1/risk/holds",
        "/api/console/v1/risk/holds/{hold_id}",
        "/api/console/v1/risk/holds/{hold_id}/approve",
        "/api/console/v1/risk/holds/{hold_id}/reject",
        "/api/console/v1/risk/holds/{hold_id}/ban",
        "/api/console/v1/risk/holds/bulk",
        "/api/console/v1/risk/decisions",
        "/api/console/v1/risk/groups",
        "/api/console/v1/risk/consumers/{consumer_id}/group",
        "/api/console/v1/risk/policy",
        "/api/console/v1/risk/dry-run",
        "/api/mp/v1/risk/device",
    } <= set(paths)
    assert set(paths["/api/console/v1/risk/policy"]) >= {"get", "patch"}


def test_event_batches_too_big_or_for_another_consumer_leave_no_trail(
    shop: Shop, campaign: int, db_session: Session, redis: object
) -> None:
    from datetime import timedelta

    from app.core.db import utcnow
    from app.queue.queues import get_redis
    from app.risk.counters import key_prefix

    carol = person(shop, "carol", ip="198.51.100.30", device=None)
    at = (utcnow() - timedelta(minutes=1)).isoformat()
    event = {"type": "view", "sku": "TEA-1", "occurred_at": at}
    for body in (
        {"events": [event] * 101},
        {"events": [event | {"consumer_id": shop.consumer_id}]},
        {"events": [event], "consumer_id": shop.consumer_id},
    ):
        answer = carol.post("/api/mp/v1/events", json=body)
        assert answer.status_code == 422, answer.json
    for consumer_id in (carol.consumer_id, shop.consumer_id):
        assert get_redis().zcard(f"{key_prefix(shop.merchant.id)}:trail:{consumer_id}") == 0
    order = carol.order("CAROL-1", 20000)
    from app.risk.models import RiskHold

    hold = db_session.scalar(select(RiskHold).where(RiskHold.order_id == order))
    assert hold is not None and hold.reasons == ["no_trail"]


def test_the_group_cache_is_written_again_from_the_database(
    shop: Shop, campaign: int, reviewer: Console, redis: object
) -> None:
    from app.queue.queues import get_redis
    from app.risk.links import member_key, size_prefix
    from jobs.risk import refresh_groups

    phone = device_token(shop.client)
    a = person(shop, "ann", ip="198.51.100.70", device=phone)
    b = person(shop, "ben", ip="198.51.100.71", device=phone)
    a.browse()
    a.order("ANN-1", 20000)
    b.browse()
    b.order("BEN-1", 20000)
    group = min(a.consumer_id, b.consumer_id)
    connection = get_redis()
    connection.flushdb()  # Redis lost
    assert refresh_groups() == 2
    assert connection.get(member_key(shop.merchant.id, b.consumer_id)) == str(group).encode()
    assert connection.get(f"{size_prefix(shop.merchant.id)}{group}") == f"{group}:2".encode()
