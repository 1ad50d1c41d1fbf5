"""The worker refuses to be quiet about a Redis that may evict queued jobs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis as redis_lib
from flask import Flask

from app.queue.worker import eviction_warning, warn_if_evicting


@pytest.fixture
def lru_redis(redis: redis_lib.Redis) -> Iterator[redis_lib.Redis]:
    original = redis.config_get("maxmemory-policy")["maxmemory-policy"]
    redis.config_set("maxmemory-policy", "allkeys-lru")
    yield redis
    redis.config_set("maxmemory-policy", original)


def test_noeviction_is_quiet(app: Flask, redis: redis_lib.Redis) -> None:
    redis.config_set("maxmemory-policy", "noeviction")
    assert eviction_warning(redis) is None


def test_evicting_policy_warns_loudly(
    app: Flask,
    lru_redis: redis_lib.Redis,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    warn_if_evicting(lru_redis)
    assert "allkeys-lru" in capsys.readouterr().err
    assert any("noeviction" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
