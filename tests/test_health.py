"""Probes: /healthz is liveness; /readyz checks database, Redis and the migration head."""

from __future__ import annotations

from flask.testing import FlaskClient

from app.settings import Settings
from tests.conftest import AppFactory


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_when_everything_is_up(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.json
    body = response.json
    assert body["status"] == "ready"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True,
        "migrations": True,
        "redis": True,
    }


def test_readyz_fails_when_redis_is_down(settings: Settings, app_factory: AppFactory) -> None:
    dead = settings.model_copy(
        update={"redis": settings.redis.model_copy(update={"url": "redis://127.0.0.1:1/0"})}
    )
    response = app_factory(dead).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["redis"]["ok"] is False
    assert response.json["checks"]["database"]["ok"] is True


def test_readyz_fails_when_schema_is_not_migrated(
    settings: Settings, empty_database_url: str, app_factory: AppFactory
) -> None:
    unmigrated = settings.model_copy(
        update={"database": settings.database.model_copy(update={"url": empty_database_url})}
    )
    response = app_factory(unmigrated).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["database"]["ok"] is True
    assert response.json["checks"]["migrations"]["ok"] is False
