"""The messages page: an operator sets a kind's template on a channel (the JSON API then answers it), a value
a message does not have is refused with the reason and saves nothing, the outbox shows what was sent and what
had no channel (filtered by status), and a viewer reads and changes nothing."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth.principals import Role
from app.extensions import db
from app.messages.models import MessageTemplate
from app.messages.service import collect
from tests.campaign_setup import start_campaign
from tests.console_client import Console
from tests.console_ui.pages import Browser
from tests.factories import make_staff
from tests.messages.test_consumer_messages import MP_TEMPLATE, _consent, _packet, _send_queued
from tests.payments.conftest import Shop, shop
from tests.rebates.builders import two_way

__all__ = ["shop"]


def _browser(shop: Shop, role: Role) -> tuple[Browser, str]:
    staff = make_staff(merchant=shop.merchant, role=role)
    db.session.commit()
    browser = Browser(shop.client.application.test_client())
    assert browser.login(staff.email).status_code == 303
    return browser, staff.email


def test_an_operator_sets_templates_and_reads_the_outbox(
    shop: Shop, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    slug = shop.merchant.slug
    campaign_id = start_campaign(shop, app, client, {"rules": [two_way()]})
    operator, email = _browser(shop, Role.OPERATOR)
    saved = operator.post(
        f"/console/m/{slug}/messages/templates",
        {
            "kind": "red_packet_received",
            "channel": "mp_subscribe",
            "template_id": MP_TEMPLATE,
            "fields": "thing1=title\namount2=amount\ntime3=valid_until",
            "page": "pages/wallet/index",
        },
    )
    assert saved.status_code == 303
    api = Console(client, slug).login(email)
    [template] = api.get("/api/console/v1/message-templates").json
    assert (template["kind"], template["channel"], template["template_id"]) == (
        "red_packet_received",
        "mp_subscribe",
        MP_TEMPLATE,
    )
    assert template["fields"] == {"thing1": "title", "amount2": "amount", "time3": "valid_until"}

    # A value the kind does not have: refused with the reason, nothing saved.
    refused = operator.post(
        f"/console/m/{slug}/messages/templates",
        {
            "kind": "withdrawal_arrived",
            "channel": "oa_template",
            "template_id": "OA-1",
            "fields": "thing1=min_spend",
        },
    )
    assert refused.status_code == 303
    page = operator.get(f"/console/m/{slug}/messages").text
    assert 'data-flash="error"' in page and "min_spend" in page
    assert db_session.scalar(select(func.count(MessageTemplate.id))) == 1
    assert 'data-template="red_packet_received-mp_subscribe"' in page and MP_TEMPLATE in page

    # Two packets, one consent: one subscribe message sent, one with no channel; the outbox shows both.
    assert _consent(shop).status_code == 200
    _packet(api, campaign_id, shop, "msg-page-1")
    _packet(api, campaign_id, shop, "msg-page-2")
    assert collect() == 2
    db_session.commit()
    assert sorted(_send_queued(app, "jobs.messages.send")) == ["no_channel", "sent"]
    outbox = operator.get(f"/console/m/{slug}/messages").text
    statuses = re.findall(r'data-test="message-status">([^<]+)<', outbox)
    assert len(statuses) == 2
    only_sent = operator.get(f"/console/m/{slug}/messages?status=sent").text
    assert len(re.findall(r"data-message=", only_sent)) == 1
    only_none = operator.get(f"/console/m/{slug}/messages?status=no_channel").text
    assert len(re.findall(r"data-message=", only_none)) == 1


def test_a_viewer_reads_the_messages_and_sets_no_template(shop: Shop, db_session: Session) -> None:
    slug = shop.merchant.slug
    viewer, _ = _browser(shop, Role.VIEWER)
    page = viewer.get(f"/console/m/{slug}/messages")
    assert page.status_code == 200
    assert 'data-test="read-only"' in page.text and 'data-test="template-form"' not in page.text
    refused = viewer.post(
        f"/console/m/{slug}/messages/templates",
        {"kind": "rebate_available", "channel": "oa_template", "template_id": "X", "fields": "thing1=title"},
    )
    assert refused.status_code == 403
    assert db_session.scalar(select(func.count(MessageTemplate.id))) == 0
