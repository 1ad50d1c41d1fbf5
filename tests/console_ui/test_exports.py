"""Exports: CSV and Excel of the merchant's rows only, formulas neutralised, long ones as a job with progress."""

from __future__ import annotations

import csv
import io

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy.orm import Session

from app.audit.service import Actor, record_audit
from app.auth.principals import Role
from app.exports import service
from app.extensions import db
from tests.console_ui.pages import Browser
from tests.factories import make_merchant, make_staff


@pytest.fixture
def merchant_id(db_session: Session, redis: object) -> int:
    merchant = make_merchant("exporter")
    other = make_merchant("neighbour")
    for role in (Role.FINANCE, Role.VIEWER, Role.OPERATOR):
        make_staff(f"{role.value}@exporter.test", merchant=merchant, role=role)
    for n in range(3):
        record_audit(
            actor=Actor("staff", "1"), action=f'=HYPERLINK("x"){n}', target_type="t", merchant_id=merchant.id
        )
    record_audit(actor=Actor("staff", "1"), action="neighbour.secret", target_type="t", merchant_id=other.id)
    db.session.flush()
    return merchant.id


def test_csv_and_excel_hold_the_merchants_rows_without_formulas(
    client: FlaskClient, merchant_id: int
) -> None:
    browser = Browser(client)
    assert browser.login("viewer@exporter.test").status_code == 303
    response = browser.get("/console/m/exporter/exports/audit.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert rows[0][:5] == ["id", "created_at", "actor_type", "actor_id", "action"]
    actions = [row[4] for row in rows[1:] if row[4] != "merchant.create"]
    assert sorted(actions) == [f'\'=HYPERLINK("x"){n}' for n in range(3)]  # text, never a formula
    book = load_workbook(io.BytesIO(browser.get("/console/m/exporter/exports/audit.xlsx").data))
    sheet = book["audit"]
    values = [row[4] for row in sheet.iter_rows(min_row=2, values_only=True) if row[4] != "merchant.create"]
    assert sorted(values) == sorted(actions)
    assert all(cell.data_type == "s" for row in sheet.iter_rows(min_row=2) for cell in row[4:5])


def test_an_operator_may_not_export(client: FlaskClient, merchant_id: int) -> None:
    browser = Browser(client)
    assert browser.login("operator@exporter.test").status_code == 303
    assert browser.get("/console/m/exporter/exports/orders.csv").status_code == 403
    assert browser.get("/console/m/exporter/exports").status_code == 403


def test_a_long_export_runs_as_a_job_with_progress(
    app: Flask, client: FlaskClient, merchant_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "BATCH", 2)  # three rows: two batches, progress in between
    monkeypatch.setattr(service, "DIRECT_MAX_ROWS", 1)
    browser = Browser(client)
    assert browser.login("finance@exporter.test").status_code == 303
    refused = browser.get("/console/m/exporter/exports/audit.csv")
    assert refused.status_code == 303  # too long at once: sent to the exports page
    started = browser.post("/console/m/exporter/exports", {"kind": "audit", "fmt": "xlsx"})
    assert started.status_code == 303
    (job,) = service.recent_exports(merchant_id=merchant_id)
    # merchant.create and three entries; the export's own audit entry comes after the count
    assert (job["status"], job["total"], job["percent"]) == ("queued", 4, 0)
    seen: list[int] = []
    original = service._progress
    monkeypatch.setattr(service, "_progress", lambda key, done: (seen.append(done), original(key, done)))
    assert service.build_export(job["id"]) == "done"  # what jobs.exports.build_export runs
    assert seen == [2, 4]  # every batch of two
    assert service.build_export(job["id"]) == "done"  # a repeat leaves it as it is
    page = browser.get("/console/m/exporter/exports").text
    assert 'data-test="export-file"' in page
    download = browser.get(f"/console/m/exporter/exports/jobs/{job['id']}")
    assert download.status_code == 200
    rows = list(load_workbook(io.BytesIO(download.data))["audit"].iter_rows(min_row=2, values_only=True))
    assert [row[4] for row in rows][-1] == "export.create" and len(rows) == 5
    assert browser.get("/console/m/exporter/exports/jobs/nosuchexport").status_code == 404
