"""Messages to consumers through the sandbox: a red packet announced once by a subscribe message spending
the one consent the consumer gave, else by a template message to a follower, else not at all."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.principals import Role
from app.messages.models import ConsumerMessage, MessageConsent, MessageStatus
from app.messages.service import collect
from app.queue import QueueName, get_queue
from tests.campaign_setup import start_campaign
from tests.console_client import Console
from tests.factories import make_staff
from tests.payments.conftest import Shop
from tests.rebates.builders import two_way

MP_TEMPLATE, OA_TEMPLATE = "TPL-RP-RECEIVED-1", "OA-RP-RECEIVED-1"


def _console(shop: Shop, client: FlaskClient) -> Console:
    owner = make_staff(merchant=shop.merchant, role=Role.OPERATOR)
    return Console(client, shop.merchant.slug).login(owner.email)


def _templates(console: Console) -> None:
    for channel, template_id in (("mp_subscribe", MP_TEMPLATE), ("oa_template", OA_TEMPLATE)):
        put = console.client.put(
            "/api/console/v1/message-templates",
            json={
                "kind": "red_packet_received",
                "channel": channel,
                "template_id": template_id,
                "fields": {"thing1": "title", "amount2": "amount", "time3": "valid_until"},
                "page": "pages/wallet/index",
            },
            headers=console.headers(),
        )
        assert put.status_code == 200, put.json


def _packet(console: Console, campaign_id: int, shop: Shop, key: str) -> int:
    issued = console.post(
        f"/api/console/v1/campaigns/{campaign_id}/red-packets",
        json={"consumer_id": shop.consumer_id, "rule_id": "two-way", "idempotency_key": key},
    )
    assert issued.status_code == 201, issued.json
    return int(issued.json["id"])


def _send_queued(app: Flask, func: str) -> list[Any]:
    queue = get_queue(QueueName.DEFAULT)
    results = []
    for job in queue.jobs:
        if job.func_name == func:
            results.append(job.perform())
            queue.remove(job)
    return results


def _consent(shop: Shop, user: str = "alice", accept: bool = True) -> Any:
    answers = shop.sandbox.post(
        f"/users/{user}/subscribe-consent",
        {"appid": shop.merchant.mp_appid, "template_ids": [MP_TEMPLATE], "accept": accept},
    )
    return shop.client.post(
        "/api/mp/v1/message-consents", headers=shop.consumer_headers, json={"results": answers}
    )


def test_a_packet_is_announced_once_by_the_one_consent_given(
    shop: Shop, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    campaign_id = start_campaign(shop, app, client, {"rules": [two_way()]})
    console = _console(shop, client)
    _templates(console)
    reported = _consent(shop)
    assert reported.status_code == 200 and reported.json == {"held": {MP_TEMPLATE: 1}}
    first = _packet(console, campaign_id, shop, "gift-0001")
    second = _packet(console, campaign_id, shop, "gift-0002")

    assert collect() == 2
    assert collect() == 0  # each fact is owed once, however often the sweep runs
    db_session.commit()
    assert sorted(_send_queued(app, "jobs.messages.send")) == ["no_channel", "sent"]

    [sent] = shop.sandbox.get("/messages")["messages"]
    assert (sent["kind"], sent["template_id"], sent["link"]) == (
        "subscribe",
        MP_TEMPLATE,
        "pages/wallet/index",
    )
    assert sent["data"]["thing1"] == {"value": "你收到一个红包"} and sent["data"]["amount2"] == {
        "value": "10.00元"
    }
    rows = db_session.scalars(select(ConsumerMessage).order_by(ConsumerMessage.id)).all()
    assert {r.dedupe_key: r.status for r in rows} == {
        f"red_packet_received:{first}": MessageStatus.SENT,
        f"red_packet_received:{second}": MessageStatus.NO_CHANNEL,
    }
    consent = db_session.scalars(select(MessageConsent)).one()
    assert consent.remaining == 0
    listed = console.get("/api/console/v1/messages").json
    assert sorted(m["status"] for m in listed) == ["no_channel", "sent"]


def test_a_follower_without_consent_gets_the_template_message(
    shop: Shop, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    campaign_id = start_campaign(shop, app, client, {"rules": [two_way()]})
    console = _console(shop, client)
    _templates(console)
    shop.sandbox.post("/users/alice/follow", {"appid": shop.merchant.oa_appid})
    assert _send_queued(app, "jobs.followers.welcome") == [None]
    _packet(console, campaign_id, shop, "gift-0003")

    collect()
    db_session.commit()

    assert _send_queued(app, "jobs.messages.send") == ["sent"]
    [sent] = shop.sandbox.get("/messages")["messages"]
    assert (sent["kind"], sent["template_id"], sent["appid"]) == (
        "template",
        OA_TEMPLATE,
        shop.merchant.oa_appid,
    )


def test_a_consent_wechat_does_not_hold_is_spent_and_the_message_goes_another_way(
    shop: Shop, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    """The mini-program reported an acceptance WeChat never recorded (43101): nothing reaches the user
    by that channel; not following either, the message is marked as having no channel."""
    campaign_id = start_campaign(shop, app, client, {"rules": [two_way()]})
    console = _console(shop, client)
    _templates(console)
    forged = shop.client.post(
        "/api/mp/v1/message-consents",
        headers=shop.consumer_headers,
        json={"results": {MP_TEMPLATE: "accept", "NOT-OURS": "accept"}},
    )
    assert forged.json == {"held": {MP_TEMPLATE: 1}}
    _packet(console, campaign_id, shop, "gift-0004")

    collect()
    db_session.commit()

    assert _send_queued(app, "jobs.messages.send") == ["no_channel"]
    assert shop.sandbox.get("/messages")["messages"] == []
    assert db_session.scalars(select(MessageConsent)).one().remaining == 0
