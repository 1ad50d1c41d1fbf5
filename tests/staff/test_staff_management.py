"""Staff roles per merchant through the console: owners manage, the last owner stays, all audited."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEntry
from app.auth.principals import Role
from app.merchants.models import Merchant
from app.staff.models import StaffAccount, StaffMembership
from tests.console_client import Console
from tests.factories import make_merchant, make_staff

STAFF = "/api/console/v1/staff"


@dataclass
class Team:
    merchant: Merchant
    owner: StaffAccount
    viewer: StaffAccount
    outsider: StaffAccount


@pytest.fixture
def team(db_session: Session) -> Team:
    merchant = make_merchant("acme")
    return Team(
        merchant=merchant,
        owner=make_staff("owner@acme.test", merchant=merchant, role=Role.OWNER),
        viewer=make_staff("viewer@acme.test", merchant=merchant, role=Role.VIEWER),
        outsider=make_staff("newbie@acme.test"),
    )


def _console(app: Flask, account: StaffAccount, merchant: Merchant) -> Console:
    return Console(app.test_client(), merchant.slug).login(account.email)


def test_any_role_lists_the_team(client: FlaskClient, team: Team) -> None:
    response = Console(client, "acme").login(team.viewer.email).get(STAFF)
    assert response.status_code == 200
    assert [(m["email"], m["role"]) for m in response.json["items"]] == [
        ("owner@acme.test", "owner"),
        ("viewer@acme.test", "viewer"),
    ]


def test_owner_adds_changes_and_removes_a_member_with_audit(
    client: FlaskClient, team: Team, db_session: Session
) -> None:
    owner = Console(client, "acme").login(team.owner.email)
    added = owner.post(STAFF, json={"email": "NEWBIE@acme.test", "role": "operator"})
    assert added.status_code == 201, added.json
    assert added.json["role"] == "operator"
    staff_id = added.json["staff_id"]
    assert owner.post(STAFF, json={"email": "newbie@acme.test", "role": "viewer"}).status_code == 409
    changed = owner.patch(f"{STAFF}/{staff_id}", json={"role": "finance"})
    assert changed.status_code == 200 and changed.json["role"] == "finance"
    assert owner.delete(f"{STAFF}/{staff_id}").status_code == 204
    assert db_session.scalar(select(StaffMembership).where(StaffMembership.staff_id == staff_id)) is None

    entries = db_session.scalars(
        select(AuditEntry).where(
            AuditEntry.merchant_id == team.merchant.id, AuditEntry.target_id == str(staff_id)
        )
    ).all()
    assert [(e.action, e.before, e.after) for e in entries] == [
        ("staff.membership.add", None, {"email": "newbie@acme.test", "role": "operator"}),
        (
            "staff.membership.change_role",
            {"email": "newbie@acme.test", "role": "operator"},
            {"email": "newbie@acme.test", "role": "finance"},
        ),
        ("staff.membership.remove", {"email": "newbie@acme.test", "role": "finance"}, None),
    ]
    assert all(e.actor_type == "staff" and e.actor_id == str(team.owner.id) for e in entries)


def test_adding_an_unknown_account_is_404(client: FlaskClient, team: Team) -> None:
    owner = Console(client, "acme").login(team.owner.email)
    assert owner.post(STAFF, json={"email": "ghost@acme.test", "role": "viewer"}).status_code == 404


def test_non_owners_cannot_manage_staff(client: FlaskClient, team: Team) -> None:
    viewer = Console(client, "acme").login(team.viewer.email)
    response = viewer.post(STAFF, json={"email": "newbie@acme.test", "role": "viewer"})
    assert response.status_code == 403
    assert viewer.patch(f"{STAFF}/{team.viewer.id}", json={"role": "owner"}).status_code == 403
    assert viewer.delete(f"{STAFF}/{team.owner.id}").status_code == 403


def test_the_last_owner_cannot_be_demoted_or_removed(app: Flask, team: Team, db_session: Session) -> None:
    owner = _console(app, team.owner, team.merchant)
    demote = owner.patch(f"{STAFF}/{team.owner.id}", json={"role": "viewer"})
    assert demote.status_code == 409
    assert demote.json["error"]["code"] == "conflict"
    assert owner.delete(f"{STAFF}/{team.owner.id}").status_code == 409
    # With a second owner, the first may step down.
    assert owner.patch(f"{STAFF}/{team.viewer.id}", json={"role": "owner"}).status_code == 200
    assert owner.delete(f"{STAFF}/{team.owner.id}").status_code == 204
    # ...and from then on has no access at this merchant.
    assert owner.get(STAFF).status_code == 403


def test_members_of_another_merchant_are_not_found(app: Flask, team: Team, db_session: Session) -> None:
    other = make_merchant("globex")
    stranger = make_staff("boss@globex.test", merchant=other, role=Role.OWNER)
    owner = _console(app, team.owner, team.merchant)
    assert owner.patch(f"{STAFF}/{stranger.id}", json={"role": "viewer"}).status_code == 404
    assert owner.delete(f"{STAFF}/{stranger.id}").status_code == 404


def test_validation_errors(client: FlaskClient, team: Team) -> None:
    owner = Console(client, "acme").login(team.owner.email)
    response = owner.post(STAFF, json={"email": "newbie@acme.test", "role": "emperor"})
    assert response.status_code == 422
    assert "role" in response.json["error"]["details"]["fields"]
