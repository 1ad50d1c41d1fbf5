"""Typed settings: built-in development defaults < TOML file < ``HONGLI_<SECTION>__<KEY>`` environment.

Loaded and validated once, at start-up, by :func:`load_settings`; any problem raises
:class:`SettingsError` whose message names the offending key.
"""

from __future__ import annotations

import base64
import json
import os
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "HONGLI_"
CONFIG_ENV_VAR = "HONGLI_CONFIG"
DEFAULT_CONFIG_PATH = "config.toml"

# The development secret is public (it is in this file): production refuses it.
DEV_SECRET_KEY = "dev-insecure-secret-key-change-me"  # noqa: S105
SANDBOX_BASE_URL = "http://127.0.0.1:8900"
# The development master key is public too (base64 of 32 bytes); production refuses it.
DEV_MASTER_KEY = "ZGV2LW9ubHktbWFzdGVyLWtleS0zMi1ieXRlcyEhISE="


class SettingsError(Exception):
    """Configuration is missing, malformed or unsafe; the message names the key."""


class Env(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebSettings(_Section):
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    public_base_url: str = "http://127.0.0.1:8000"
    # Number of reverse proxies in front of us whose X-Forwarded-* headers are trusted.
    trusted_proxy_count: int = Field(default=0, ge=0, le=5)
    max_content_length_bytes: int = Field(default=1_048_576, ge=1024)

    @field_validator("public_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _require_http_url(value)


class DatabaseSettings(_Section):
    url: str = "sqlite:///instance/hongli.db"
    echo: bool = False
    pool_size: int = Field(default=5, ge=1, le=200)
    pool_recycle_seconds: int = Field(default=1800, ge=30)
    # SQLite: how long a transaction waits for the one write lock before the request answers 503.
    sqlite_busy_timeout_ms: int = Field(default=15000, ge=100, le=600000)
    # PostgreSQL: let psycopg prepare statements it runs often on a connection. Turn off behind PgBouncer in
    # transaction pooling (before 1.21, or without max_prepared_statements): a statement prepared on one
    # server connection does not exist on the next transaction's (docs/scaling.md).
    prepared_statements: bool = True

    @field_validator("url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if not value.startswith(("postgresql+psycopg://", "postgresql://", "sqlite:///")):
            raise ValueError("must be a postgresql+psycopg:// or sqlite:/// URL")
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


class RedisSettings(_Section):
    url: str = "redis://127.0.0.1:6390/0"

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value


class QueueSettings(_Section):
    # Prefix of every queue name, so several deployments can share one Redis.
    prefix: str = Field(default="hongli", pattern=r"^[a-z][a-z0-9_-]{0,30}$")
    job_timeout_seconds: int = Field(default=300, ge=1)
    result_ttl_seconds: int = Field(default=3600, ge=0)
    failure_ttl_seconds: int = Field(default=30 * 86400, ge=3600)
    periodic_jobs_enabled: bool = True
    # Every worker writes a heartbeat per queue it listens to this often; /readyz is ready only when every
    # queue has one younger than worker_heartbeat_max_age_seconds (0: readiness does not look at workers).
    worker_heartbeat_seconds: int = Field(default=10, ge=1, le=300)
    worker_heartbeat_max_age_seconds: int = Field(default=60, ge=0, le=3600)

    @model_validator(mode="after")
    def _heartbeat_fits(self) -> QueueSettings:
        max_age = self.worker_heartbeat_max_age_seconds
        if max_age and max_age < 2 * self.worker_heartbeat_seconds:
            raise ValueError(
                "worker_heartbeat_max_age_seconds must be 0 or at least twice worker_heartbeat_seconds"
            )
        return self


class WeChatSettings(_Section):
    api_base_url: str = SANDBOX_BASE_URL
    pay_base_url: str = SANDBOX_BASE_URL
    open_base_url: str = SANDBOX_BASE_URL
    timeout_seconds: int = Field(default=10, ge=1, le=60)

    @field_validator("api_base_url", "pay_base_url", "open_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _require_http_url(value).rstrip("/")

    def sandbox_urls(self) -> list[str]:
        """Names of the base URLs that point at a local host (the sandbox, never real WeChat)."""
        local = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}  # noqa: S104
        return [
            name
            for name in ("api_base_url", "pay_base_url", "open_base_url")
            if urlsplit(getattr(self, name)).hostname in local
        ]


class SecuritySettings(_Section):
    # Master key for envelope encryption of merchant credentials and session keys: base64 of 32
    # random bytes, given inline (env HONGLI_SECURITY__MASTER_KEY) or read from master_key_file.
    master_key: SecretStr = SecretStr(DEV_MASTER_KEY)
    master_key_file: str = ""
    # Keys that still open older data during a rotation (`flask --app wsgi merchants reseal`).
    previous_master_keys: list[SecretStr] = []
    consumer_token_ttl_seconds: int = Field(default=7 * 86400, ge=300, le=90 * 86400)
    staff_session_ttl_seconds: int = Field(default=12 * 3600, ge=300, le=30 * 86400)
    # A console session unused this long ends too (each request slides it, within the TTL above).
    staff_session_idle_seconds: int = Field(default=2 * 3600, ge=300, le=30 * 86400)
    # Login abuse limits: attempts per client IP per minute, and failed staff passwords before backoff.
    login_attempts_per_ip_per_minute: int = Field(default=30, ge=1)
    login_attempts_per_account_per_minute: int = Field(default=10, ge=1)
    staff_failures_before_lockout: int = Field(default=5, ge=1, le=50)

    @field_validator("master_key", "previous_master_keys")
    @classmethod
    def _is_key(cls, value: SecretStr | list[SecretStr]) -> SecretStr | list[SecretStr]:
        for key in value if isinstance(value, list) else [value]:
            decode_master_key(key.get_secret_value())
        return value

    def master_keys(self) -> tuple[bytes, list[bytes]]:
        """The current master key (from the file when set) and the previous ones, decoded."""
        if self.master_key_file:
            try:
                current = decode_master_key(Path(self.master_key_file).read_text().strip())
            except (OSError, ValueError) as exc:
                raise SettingsError(f"invalid setting security.master_key_file: {exc}") from None
        else:
            current = decode_master_key(self.master_key.get_secret_value())
        return current, [decode_master_key(k.get_secret_value()) for k in self.previous_master_keys]


def decode_master_key(text: str) -> bytes:
    """Base64 of exactly 32 bytes, else ValueError."""
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raise ValueError("must be base64 (32 random bytes: `openssl rand -base64 32`)") from None
    if len(raw) != 32:
        raise ValueError("must decode to exactly 32 bytes (`openssl rand -base64 32`)")
    return raw


class PaymentSettings(_Section):
    # An order not paid this long after its first payment attempt is closed at WeChat and here.
    unpaid_order_timeout_minutes: int = Field(default=30, ge=5, le=24 * 60)
    # Orders still unpaid this close to their timeout are confirmed by the order query API first.
    query_before_close_minutes: int = Field(default=5, ge=1, le=60)
    # How long a process trusts its snapshot of a merchant when WeChat calls back (0: read it every time).
    merchant_cache_seconds: int = Field(default=30, ge=0, le=600)


class PayoutSettings(_Section):
    # A payout submitting/unknown this long without a query on record is overdue: the periodic sweep queries
    # it well before (at half the deadline) and `flask payouts check` fails on any that are past it.
    unknown_query_deadline_minutes: int = Field(default=30, ge=2, le=24 * 60)
    # A transfer bill still awaiting the user's confirmation this long after WeChat accepted it is cancelled.
    transfer_confirm_timeout_hours: int = Field(default=12, ge=1, le=23)
    # Cash red packets sent per second per merchant (WeChat's limit is 1800/min); beyond it a pass waits.
    red_packets_per_second: int = Field(default=30, ge=1, le=30)


class MetricsSettings(_Section):
    # GET /metrics in the Prometheus text format (docs/operations.md, "Metrics").
    enabled: bool = True
    # A scraper presents it as "Authorization: Bearer <token>". Empty: only clients on this machine
    # (a loopback address, with no X-Forwarded-For or Forwarded header) may scrape.
    token: SecretStr = SecretStr("")


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"


class Settings(BaseModel):
    """Everything Hongli reads from configuration; immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: Env = Env.DEVELOPMENT
    web: WebSettings = WebSettings()
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    queue: QueueSettings = QueueSettings()
    wechat: WeChatSettings = WeChatSettings()
    security: SecuritySettings = SecuritySettings()
    payments: PaymentSettings = PaymentSettings()
    payouts: PayoutSettings = PayoutSettings()
    metrics: MetricsSettings = MetricsSettings()
    logging: LoggingSettings = LoggingSettings()

    @model_validator(mode="after")
    def _production_is_safe(self) -> Settings:
        if self.env is not Env.PRODUCTION:
            return self
        if (
            self.web.secret_key.get_secret_value() == DEV_SECRET_KEY
            or len(self.web.secret_key.get_secret_value()) < 32
        ):
            raise ValueError("web.secret_key: production needs a random secret of at least 32 characters")
        sandbox = self.wechat.sandbox_urls()
        if sandbox:
            raise ValueError(f"wechat.{sandbox[0]}: production must not point at the WeChat sandbox")
        if self.database.is_sqlite:
            raise ValueError("database.url: production runs on PostgreSQL, not SQLite")
        if (
            not self.security.master_key_file
            and self.security.master_key.get_secret_value() == DEV_MASTER_KEY
        ):
            raise ValueError("security.master_key: production needs its own master key (or master_key_file)")
        return self


def load_settings(
    config_path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Load defaults, then the TOML file, then ``HONGLI_*`` variables; validate once.

    The file is ``config_path``, else ``$HONGLI_CONFIG``, else ``config.toml`` if it exists.
    """
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    explicit = config_path or environ.get(CONFIG_ENV_VAR)
    path = Path(explicit or DEFAULT_CONFIG_PATH)
    if path.is_file():
        data = _read_toml(path)
    elif explicit:
        raise SettingsError(f"{CONFIG_ENV_VAR}: config file {path} does not exist")
    _overlay_environment(data, environ)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: malformed TOML: {exc}") from None


def _overlay_environment(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV_VAR:
            continue
        path = name.removeprefix(ENV_PREFIX).lower().split("__")
        if len(path) > 2 or not all(path):
            raise SettingsError(f"{name}: expected HONGLI_<KEY> or HONGLI_<SECTION>__<KEY>")
        target = data
        if len(path) == 2:
            section = target.setdefault(path[0], {})
            if not isinstance(section, dict):
                raise SettingsError(f"{name}: '{path[0]}' is not a section")
            target = section
        target[path[-1]] = _env_value(name, value)


def _env_value(name: str, value: str) -> Any:
    # Lists come from the environment as JSON arrays, e.g. HONGLI_SECURITY__PREVIOUS_MASTER_KEYS='["…"]'.
    if value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise SettingsError(f"{name}: not a JSON array") from None
    return value


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        message = error["msg"].removeprefix("Value error, ")
        if loc:
            key = ".".join(loc)
            env_name = ENV_PREFIX + "__".join(part.upper() for part in loc)
            lines.append(f"invalid setting {key} (env {env_name}): {message}")
        else:
            lines.append(f"invalid settings: {message}")
    return "; ".join(lines)


def _require_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    return value
