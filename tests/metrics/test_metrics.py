"""GET /metrics: the Prometheus text format, protected by a token or the client's address, its counters
moved by a paid order of the seed campaign and its figures read from the database and Redis."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy.orm import Session

from app.metrics.collectors import record_ledger_check
from app.queue import QueueName
from app.queue.heartbeat import beat
from app.settings import Settings
from tests.campaign_setup import start_campaign
from tests.conftest import AppFactory
from tests.payments.conftest import Shop
from tests.rebates.test_two_way_end_to_end import TWO_WAY

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: FlaskClient, **kwargs: object) -> Samples:
    """Every sample of /metrics, parsed by prometheus-client's own text parser."""
    response = client.get("/metrics", **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    samples: Samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_client_on_this_machine_may_scrape_without_a_token(client: FlaskClient) -> None:
    samples = scrape(client)
    assert value(samples, "hongli_up", dependency="database") == 1
    assert value(samples, "hongli_up", dependency="redis") == 1
    # Queues are listed even when empty.
    assert {labels for name, labels in samples if name == "hongli_queue_jobs"} == {
        (("queue", q.value),) for q in QueueName
    }


def test_without_a_token_a_proxied_or_remote_client_is_refused(client: FlaskClient) -> None:
    proxied = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status_code == 403
    assert proxied.json["error"]["code"] == "forbidden"
    remote = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert remote.status_code == 403


def test_with_a_token_only_its_bearer_may_scrape(
    settings: Settings, app_factory: AppFactory, client: FlaskClient
) -> None:
    secured = settings.model_copy(
        update={"metrics": settings.metrics.model_copy(update={"token": SecretStr("s3cret-scrape-token")})}
    )
    other = app_factory(secured).test_client()
    assert other.get("/metrics").status_code == 401
    assert other.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    remote = {"REMOTE_ADDR": "203.0.113.9"}
    ok = other.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape-token"}, environ_base=remote)
    assert ok.status_code == 200
    disabled = settings.model_copy(update={"metrics": settings.metrics.model_copy(update={"enabled": False})})
    assert app_factory(disabled).test_client().get("/metrics").status_code == 404


def test_counters_and_figures_move_with_a_paid_order_of_the_seed_campaign(
    shop: Shop, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    campaign = start_campaign(shop, app, client, TWO_WAY, name="Metrics launch")
    before = scrape(client)
    order = shop.register("METRICS-1", 20000)
    shop.pay(order["id"])  # the sandbox delivers TRANSACTION.SUCCESS to the notify URL
    beat(app, [QueueName.PAYOUTS])
    record_ledger_check(app, checks=12, violations=0)
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    notified = {
        labels: after[name, labels] - before.get((name, labels), 0.0)
        for name, labels in after
        if name == "hongli_wechat_notifications_total"
        and after[name, labels] != before.get((name, labels), 0.0)
    }
    assert notified == {(("result", "applied"), ("type", "TRANSACTION.SUCCESS")): 1.0}, notified
    # The prepay went to WeChat: counted by API and outcome, its answer time observed.
    assert moved("hongli_wechat_calls_total", api="pay.jsapi_prepay", outcome="ok") == 1
    assert moved("hongli_wechat_call_seconds_count", api="pay.jsapi_prepay") == 1
    # Budget burn of the live campaign: the ¥200 order reserved its packet's worst case (16000 fen).
    merchant, campaign_id = str(shop.merchant.id), str(campaign)
    assert (
        value(
            after,
            "hongli_campaign_budget_fen",
            merchant_id=merchant,
            campaign_id=campaign_id,
            part="reserved",
        )
        == 16000
    )
    assert (
        moved("hongli_campaign_budget_fen", merchant_id=merchant, campaign_id=campaign_id, part="remaining")
        == -16000
    )
    assert value(after, "hongli_campaign_booked_fen", merchant_id=merchant, campaign_id=campaign_id) == 0
    assert 0 <= value(after, "hongli_worker_heartbeat_age_seconds", queue="payouts") < 60
    assert value(after, "hongli_ledger_check_violations") == 0
    assert value(after, "hongli_ledger_check_timestamp_seconds") > 0
