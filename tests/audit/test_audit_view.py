"""The console's audit log: one merchant's entries, newest first, paginated, without secrets."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from app.audit.service import Actor, record_audit
from app.auth.principals import Role
from app.merchants.models import Merchant
from tests.console_client import Console
from tests.factories import make_merchant, make_staff

AUDIT = "/api/console/v1/audit"


@pytest.fixture
def merchant(db_session: Session) -> Merchant:
    merchant = make_merchant("acme")
    for role in Role:
        make_staff(f"{role.value}@acme.test", merchant=merchant, role=role)
    return merchant


def test_pages_through_the_merchants_entries_only(client: FlaskClient, merchant: Merchant) -> None:
    other = make_merchant("globex")
    for n in range(5):
        record_audit(actor=Actor("system"), action=f"probe.{n}", target_type="probe", merchant_id=merchant.id)
    record_audit(actor=Actor("system"), action="probe.other", target_type="probe", merchant_id=other.id)
    console = Console(client, "acme").login("viewer@acme.test")
    seen: list[str] = []
    cursor = None
    while True:
        query = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = console.get(AUDIT, query_string=query)
        assert page.status_code == 200, page.json
        seen += [item["action"] for item in page.json["items"]]
        cursor = page.json["next_cursor"]
        if cursor is None:
            break
    # merchant.create comes from make_merchant; staff.login entries belong to no merchant.
    assert seen == ["probe.4", "probe.3", "probe.2", "probe.1", "probe.0", "merchant.create"]
    assert "probe.other" not in seen


def test_entries_never_carry_secrets(client: FlaskClient, merchant: Merchant) -> None:
    record_audit(
        actor=Actor("staff", "1"),
        action="probe.secret",
        target_type="probe",
        merchant_id=merchant.id,
        before={"apiv3_key": "0123456789abcdef0123456789abcdef", "rail": "transfer_bill"},
        after={"password": "hunter2hunter2", "nested": {"api_key": "hk_abc"}},
    )
    page = Console(client, "acme").login("owner@acme.test").get(AUDIT)
    text = page.get_data(as_text=True)
    for secret in ("0123456789abcdef", "hunter2", "hk_abc"):
        assert secret not in text
    entry = page.json["items"][0]
    assert entry["before"] == {"apiv3_key": "[redacted]", "rail": "transfer_bill"}
    assert entry["after"] == {"password": "[redacted]", "nested": {"api_key": "[redacted]"}}


@pytest.mark.parametrize(
    ("role", "status"),
    [("owner", 200), ("finance", 200), ("viewer", 200), ("operator", 403), ("reviewer", 403)],
)
def test_roles_that_read_the_log(client: FlaskClient, merchant: Merchant, role: str, status: int) -> None:
    assert Console(client, "acme").login(f"{role}@acme.test").get(AUDIT).status_code == status


def test_bad_pagination_is_a_validation_error(client: FlaskClient, merchant: Merchant) -> None:
    console = Console(client, "acme").login("owner@acme.test")
    assert console.get(AUDIT, query_string={"limit": 0}).status_code == 422
    assert console.get(AUDIT, query_string={"limit": 201}).status_code == 422
    assert console.get(AUDIT, query_string={"cursor": "abc"}).status_code == 422
