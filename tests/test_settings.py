"""Settings: file < environment, validated once, errors that name the key, safe production."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import DEV_MASTER_KEY, DEV_SECRET_KEY, Env, SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_OK = {
    "HONGLI_ENV": "production",
    "HONGLI_WEB__SECRET_KEY": "k" * 40,
    "HONGLI_DATABASE__URL": "postgresql://hongli@db.internal/hongli",
    "HONGLI_WECHAT__API_BASE_URL": "https://api.weixin.qq.com",
    "HONGLI_WECHAT__PAY_BASE_URL": "https://api.mch.weixin.qq.com",
    "HONGLI_WECHAT__OPEN_BASE_URL": "https://open.weixin.qq.com",
    "HONGLI_SECURITY__MASTER_KEY": base64.b64encode(b"p" * 32).decode(),
}


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        'env = "development"\n[database]\npool_size = 7\n[redis]\nurl = "redis://127.0.0.1:6400/1"\n'
    )
    return path


def test_defaults_are_development(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    settings = load_settings(config_path=empty, environ={})
    assert settings.env is Env.DEVELOPMENT
    assert settings.database.is_sqlite
    assert settings.web.secret_key.get_secret_value() == DEV_SECRET_KEY
    assert settings.wechat.sandbox_urls() == ["api_base_url", "pay_base_url", "open_base_url"]


def test_file_then_environment(config_file: Path) -> None:
    settings = load_settings(config_path=config_file, environ={"HONGLI_DATABASE__POOL_SIZE": "9"})
    assert settings.database.pool_size == 9
    assert settings.redis.url == "redis://127.0.0.1:6400/1"


def test_config_path_from_environment(config_file: Path) -> None:
    settings = load_settings(environ={"HONGLI_CONFIG": str(config_file)})
    assert settings.database.pool_size == 7


def test_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="HONGLI_CONFIG"):
        load_settings(environ={"HONGLI_CONFIG": str(tmp_path / "nope.toml")})


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("[database\nurl = 1\n")
    with pytest.raises(SettingsError, match=r"config\.toml: malformed TOML"):
        load_settings(config_path=bad, environ={})


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"HONGLI_DATABASE__POOL_SIZE": "many"}, "database.pool_size (env HONGLI_DATABASE__POOL_SIZE)"),
        ({"HONGLI_REDIS__URL": "http://x"}, "redis.url"),
        ({"HONGLI_DATABASE__URL": "mysql://x/y"}, "database.url"),
        ({"HONGLI_WECHAT__TIMEOUT_SECONDS": "0"}, "wechat.timeout_seconds"),
        ({"HONGLI_DATABSE__URL": "sqlite:///x.db"}, "databse"),
        ({"HONGLI_ENV": "staging"}, "invalid setting env"),
        ({"HONGLI_SECURITY__MASTER_KEY": "c2hvcnQ="}, "security.master_key"),
        ({"HONGLI_SECURITY__PREVIOUS_MASTER_KEYS": '["not base64!"]'}, "security.previous_master_keys"),
        ({"HONGLI_SECURITY__PREVIOUS_MASTER_KEYS": "[oops"}, "HONGLI_SECURITY__PREVIOUS_MASTER_KEYS"),
    ],
)
def test_invalid_values_name_the_key(tmp_path: Path, environ: dict[str, str], key: str) -> None:
    empty = tmp_path / "c.toml"
    empty.write_text("")
    with pytest.raises(SettingsError) as info:
        load_settings(config_path=empty, environ=environ)
    assert key in str(info.value)


def test_unknown_key_in_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[web]\nsecret = 'x'\n")
    with pytest.raises(SettingsError, match=r"web\.secret "):
        load_settings(config_path=path, environ={})


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"HONGLI_WEB__SECRET_KEY": DEV_SECRET_KEY}, "web.secret_key"),
        ({"HONGLI_WECHAT__PAY_BASE_URL": "http://127.0.0.1:8900"}, "wechat.pay_base_url"),
        ({"HONGLI_DATABASE__URL": "sqlite:///instance/hongli.db"}, "database.url"),
        ({"HONGLI_SECURITY__MASTER_KEY": DEV_MASTER_KEY}, "security.master_key"),
    ],
)
def test_production_refuses_insecure_defaults(tmp_path: Path, override: dict[str, str], key: str) -> None:
    empty = tmp_path / "c.toml"
    empty.write_text("")
    with pytest.raises(SettingsError, match=key):
        load_settings(config_path=empty, environ=PRODUCTION_OK | override)


def test_production_with_real_values_loads(tmp_path: Path) -> None:
    empty = tmp_path / "c.toml"
    empty.write_text("")
    settings = load_settings(config_path=empty, environ=PRODUCTION_OK)
    assert settings.env is Env.PRODUCTION
    assert settings.database.url.startswith("postgresql+psycopg://")


def test_secret_key_is_not_printed(tmp_path: Path) -> None:
    empty = tmp_path / "c.toml"
    empty.write_text("")
    settings = load_settings(config_path=empty, environ=PRODUCTION_OK)
    assert "k" * 40 not in repr(settings)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"HONGLI_DATABASE__POOL_SIZE": "lots"}, "database.pool_size"),
        ({"HONGLI_ENV": "production"}, "web.secret_key"),
    ],
)
def test_startup_with_bad_configuration_exits_non_zero(
    tmp_path: Path, env: dict[str, str], needle: str
) -> None:
    """The real entry point (what gunicorn, flask and `make run` call) stops with the key named."""
    empty = tmp_path / "c.toml"
    empty.write_text("")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HONGLI_")}
    result = subprocess.run(
        [sys.executable, "-c", "from wsgi import create_app; create_app()"],
        cwd=ROOT,
        env=clean | {"HONGLI_CONFIG": str(empty)} | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_config_file_exits_non_zero(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("env = \n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HONGLI_")}
    result = subprocess.run(
        [sys.executable, "-c", "from wsgi import create_app; create_app()"],
        cwd=ROOT,
        env=clean | {"HONGLI_CONFIG": str(bad)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "malformed TOML" in result.stderr
