"""The race suite (issue 18): every money race on PostgreSQL, on a file SQLite database in WAL mode, and
on PostgreSQL behind PgBouncer in transaction pooling with two app instances taking turns (issue 21).

Each test gets a fresh migrated database of one engine, its own app (``app_factory``, every request commits
for real) and its own in-process WeChat sandbox with an onboarded merchant. A test runs ``ROUNDS`` rounds,
each on fresh rows (a new consumer, withdrawal, packet or order) and each releasing its threads together
with a barrier; every thread has its own test client or app context, so its own session and connection.

What a thread may be answered: success; a 4xx in the error envelope (``{"error": {code, message,
details}}``, the current state in ``details`` where there is one); on SQLite only, 503 ``database_busy``
with Retry-After, counted as "refused, nothing changed". Never any other 5xx. After each round the test
asserts money, states and ledger balances, and the registered ledger checks must find nothing new.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis as redis_lib
import responses
from flask import Flask
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from werkzeug.test import TestResponse

from app.audit.service import CLI
from app.auth.principals import Role
from app.campaigns.models import Campaign, CampaignStatus
from app.campaigns.service import create_campaign, deposit_budget, fund_campaign, transition
from app.core.db import utcnow
from app.core.errors import DomainError
from app.core.money import Money
from app.extensions import db
from app.ledger.accounts import consumer_accounts
from app.ledger.checks import run_checks
from app.ledger.models import AccountKind, LedgerAccount, OwnerType
from app.merchants.models import Merchant
from app.payments.models import AttemptStatus, PaymentAttempt
from app.settings import Settings, load_settings
from app.shop_keys.service import create_shop_key
from tests.factories import DEFAULT_PASSWORD, make_staff
from tests.payments.forge import Forger
from tests.payouts.conftest import fund_available
from tests.sandbox import Sandbox
from wechat.sandbox import Clock, SandboxConfig, create_sandbox, world_of
from wechat.sandbox.testing import route_to_wsgi

ROUNDS = 20
# "pgbouncer": PostgreSQL reached through PgBouncer (transaction pooling, no prepared statements), by two
# app instances with pools of their own; requests, notifications and job calls alternate between them.
ENGINES = ("postgresql", "sqlite", "pgbouncer")
WECHAT_LATENCY_S = 0.005  # each way, per WeChat API call (real calls take tens of milliseconds)
T = TypeVar("T")


# ---------------------------------------------------------------- answers


@dataclass(frozen=True)
class Answer:
    """What one racer was told: an HTTP answer, or a service call's outcome in the same shape."""

    status: int
    body: Any = None
    retry_after: str | None = None
    value: Any = None  # what a service call returned

    @classmethod
    def of(cls, response: TestResponse) -> Answer:
        return cls(response.status_code, response.get_json(silent=True), response.headers.get("Retry-After"))

    @classmethod
    def refusal(
        cls, status: int, code: str, message: str, details: dict[str, Any] | None = None, **extra: Any
    ) -> Answer:
        return cls(status, {"error": {"code": code, "message": message, "details": details or {}}}, **extra)

    @property
    def error(self) -> dict[str, Any]:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return error if isinstance(error, dict) else {}

    @property
    def code(self) -> str | None:
        return self.error.get("code")

    @property
    def details(self) -> dict[str, Any]:
        details = self.error.get("details")
        return details if isinstance(details, dict) else {}

    @property
    def busy(self) -> bool:
        """SQLite's "wait longer than the busy timeout": refused, nothing changed."""
        return self.status == 503 and self.code == "database_busy"

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def __str__(self) -> str:
        if self.ok:
            return str(self.status)
        return f"{self.status} {self.code}: {self.error.get('message')} {self.details}"


@dataclass(frozen=True)
class Buyer:
    """A consumer signed in to the merchant's mini-program (a sandbox user of their own)."""

    consumer_id: int
    token: str
    openid: str
    uid: str


# ---------------------------------------------------------------- the race harness


@dataclass
class Race:
    """One engine's app, sandbox and merchant, with the helpers every race uses."""

    engine: str
    app: Flask
    sandbox: Sandbox
    merchant_id: int
    slug: str
    mchid: str
    mp_appid: str
    shop_key: str
    console_cookie: str
    console_csrf: str
    _serial: Iterator[int] = field(default_factory=itertools.count)
    # Every app instance serving this race (two behind PgBouncer); requests and job calls take turns.
    instances: tuple[Flask, ...] = ()
    _turn: Iterator[int] = field(default_factory=itertools.count)

    def instance(self) -> Flask:
        """The app instance the next request or job call goes to."""
        apps = self.instances or (self.app,)
        return apps[next(self._turn) % len(apps)]

    # ------------------------------------------------------------ running things at once

    def race(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        """Run every call on its own thread, all released together; their results in order."""
        barrier = threading.Barrier(len(calls))

        def run(call: Callable[[], T]) -> T:
            barrier.wait(timeout=60)
            return call()

        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            return list(pool.map(run, calls))

    def staggered(self, round_no: int, first: Callable[[], T], second: Callable[[], T]) -> list[T]:
        """Race two different steps whose window is narrow and one-sided: the one started later alternates
        by round and lags by 0–9 ms, so the rounds scan the window rather than hit one interleaving."""
        lag = round_no // 2 % 10 * 0.001

        def later(call: Callable[[], T]) -> T:
            time.sleep(lag)
            return call()

        if round_no % 2:
            return self.race([partial(later, first), second])
        return self.race([first, partial(later, second)])

    def rounds(self, body: Callable[[int], None], n: int = ROUNDS) -> None:
        """Run ``body(round)`` ``n`` times; a round fails on an exception or on a new ledger violation.

        Every round runs even after one failed, so the report says how often a race was lost."""
        seen = self.violations()
        assert not seen, f"the ledger is not clean before the first round: {sorted(seen)[:5]}"
        failures: dict[int, list[str]] = {}
        for i in range(n):
            try:
                body(i)
            except Exception as exc:
                failures.setdefault(i, []).append(f"{type(exc).__name__}: {exc}")
            now = self.violations()
            if new := sorted(now - seen):
                failures.setdefault(i, []).append(f"ledger checks: {new[:4]}")
            seen = now
        if failures:
            listed = [f"round {i + 1}: {' | '.join(found)}" for i, found in sorted(failures.items())]
            raise AssertionError(
                f"[{self.engine}] {len(failures)} of {n} rounds failed:\n" + "\n".join(listed[:6])
            )

    def next(self) -> int:
        """A number unique within this test (for keys, order numbers and sandbox users)."""
        return next(self._serial)

    # ------------------------------------------------------------ verdicts

    def assert_clean(self, answers: Iterable[Answer]) -> None:
        """Never a 5xx (but SQLite's 503 ``database_busy`` with Retry-After), every refusal an envelope."""
        bad: list[str] = []
        for answer in answers:
            if answer.status >= 500:
                if not (self.engine == "sqlite" and answer.busy and answer.retry_after):
                    bad.append(str(answer))
            elif answer.status >= 400:
                error = answer.error
                well_formed = (
                    isinstance(error.get("code"), str)
                    and isinstance(error.get("message"), str)
                    and isinstance(error.get("details"), dict)
                )
                if not well_formed:
                    bad.append(f"{answer.status} without the error envelope: {answer.body}")
        assert not bad, f"unacceptable answers: {bad}"

    # ------------------------------------------------------------ calling the app

    def post(self, path: str, json: Any = None, headers: dict[str, str] | None = None) -> Answer:
        """One HTTP request on a client of its own (its own session and connection)."""
        client = self.instance().test_client(use_cookies=False)
        return Answer.of(client.post(path, json=json, headers=headers or {}))

    def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        client = self.instance().test_client(use_cookies=False)
        return Answer.of(client.get(path, headers=headers or {}))

    def notify(self, signed: tuple[dict[str, str], bytes]) -> Answer:
        """Deliver a WeChat Pay notification (headers, exact bytes) to the merchant's notify URL."""
        headers, body = signed
        client = self.instance().test_client(use_cookies=False)
        return Answer.of(client.post(f"/wechat/{self.slug}/pay/notify", data=body, headers=headers))

    def console_post(self, path: str, json: Any = None) -> Answer:
        """As the merchant's finance staff (one console session shared by every racer)."""
        headers = {
            "Cookie": self.console_cookie,
            "X-CSRF-Token": self.console_csrf,
            "X-Hongli-Merchant": self.slug,
        }
        return self.post(path, json=json, headers=headers)

    @property
    def shop_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.shop_key}"}

    def mp_headers(self, buyer: Buyer) -> dict[str, str]:
        return {"Authorization": f"Bearer {buyer.token}", "X-WX-AppId": self.mp_appid}

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Answer:
        """``fn`` in an app context of its own, then committed: a job or service call as a worker runs it.

        A DomainError is a refusal; SQLite's "database is locked" is busy; anything else is a crash (500)."""
        with self.instance().app_context():
            try:
                value = fn(*args, **kwargs)
                db.session.commit()
            except DomainError as exc:
                db.session.rollback()
                return Answer.refusal(exc.status, exc.code, exc.message, exc.details)
            except OperationalError as exc:
                db.session.rollback()
                if "database is locked" in str(exc.orig):
                    return Answer.refusal(503, "database_busy", str(exc.orig), retry_after="1")
                return Answer.refusal(500, "internal_error", f"{type(exc).__name__}: {exc.orig}")
            except Exception as exc:
                db.session.rollback()
                return Answer.refusal(500, "internal_error", f"{type(exc).__name__}: {exc}")
            return Answer(200, value=value)

    @contextmanager
    def context(self) -> Iterator[None]:
        """An app context (its own session) for setup and for reading what was committed."""
        with self.app.app_context():
            yield

    # ------------------------------------------------------------ rows a round needs

    def buyer(self, fund_fen: int = 0) -> Buyer:
        """A new consumer: a sandbox user who signs in to the mini-program, with ``fund_fen`` available."""
        uid = f"racer{self.next()}"
        user = self.sandbox.user(id=uid, nickname=uid)
        code = self.sandbox.login_code(uid, self.mp_appid)
        login = self.post("/api/mp/v1/login", json={"appid": self.mp_appid, "code": code})
        assert login.status == 200, str(login)
        buyer = Buyer(login.body["user"]["id"], login.body["token"], user["openids"][self.mp_appid], uid)
        with self.context():
            # Every bucket exists before the race (as for anyone who has used the wallet): creating one
            # takes SQLite's write lock early and would serialise the racers by accident.
            list(consumer_accounts(self.merchant_id, buyer.consumer_id))
            if fund_fen:
                fund_available(
                    self.merchant_id, buyer.consumer_id, fund_fen, f"race-fund:{buyer.consumer_id}"
                )
            db.session.commit()
        return buyer

    def configure(self, **fields: Any) -> None:
        """Set merchant settings (withdrawal policy and the like) directly, committed."""
        with self.context():
            merchant = db.session.get(Merchant, self.merchant_id)
            assert merchant is not None
            for name, value in fields.items():
                setattr(merchant, name, value)
            db.session.commit()

    def campaign(self, rules: dict[str, Any], budget_fen: int) -> int:
        """An active campaign of ``rules`` funded with ``budget_fen`` from a deposit of the same amount."""
        n = self.next()
        with self.context():
            deposit_budget(key=f"race-bank-{n}", amount=Money(budget_fen), merchant_id=self.merchant_id)
            now = utcnow()
            campaign = create_campaign(
                merchant_id=self.merchant_id,
                name=f"race {n}",
                starts_at=now - timedelta(minutes=1),
                ends_at=now + timedelta(days=30),
                rules=rules,
                actor=CLI,
            )
            transition(
                merchant_id=self.merchant_id, campaign_id=campaign.id, to=CampaignStatus.ACTIVE, actor=CLI
            )
            db.session.commit()
            campaign_id = campaign.id
        self.fund(campaign_id, budget_fen, deposit=False)
        return campaign_id

    def fund(self, campaign_id: int, fen: int, *, deposit: bool = True) -> None:
        """Move ``fen`` more into a campaign's budget (deposited first unless ``deposit`` is False)."""
        n = self.next()
        with self.context():
            if deposit:
                deposit_budget(key=f"race-bank-{n}", amount=Money(fen), merchant_id=self.merchant_id)
            fund_campaign(
                merchant_id=self.merchant_id,
                campaign_id=campaign_id,
                amount=Money(fen),
                source="merchant",
                key=f"race-fund-{n}",
                actor=CLI,
            )
            db.session.commit()

    def rule_version(self, campaign_id: int) -> int:
        with self.context():
            campaign = db.session.get(Campaign, campaign_id)
            assert campaign is not None and campaign.current_version_id is not None
            return campaign.current_version_id

    def register(self, buyer: Buyer, total_fen: int) -> tuple[int, str]:
        """The shop registers an order of ``total_fen`` for ``buyer``: (order id, out_order_no)."""
        out_order_no = f"SO-RACE-{self.next()}"
        body = {
            "out_order_no": out_order_no,
            "consumer": {"openid": buyer.openid},
            "total_fen": total_fen,
            "items": [
                {
                    "sku": "TEA-1",
                    "name": "Oolong",
                    "category": "tea",
                    "quantity": 1,
                    "unit_price_fen": total_fen,
                }
            ],
        }
        answer = self.post("/api/shop/v1/orders", json=body, headers=self.shop_headers)
        assert answer.status == 201, str(answer)
        return int(answer.body["id"]), out_order_no

    def pay(self, buyer: Buyer, order_id: int, red_packet_id: int | None = None) -> Answer:
        """The consumer opens the pay sheet (JSAPI prepay), optionally spending a red packet."""
        body = {"red_packet_id": red_packet_id} if red_packet_id is not None else {}
        return self.post(f"/api/mp/v1/orders/{order_id}/pay", json=body, headers=self.mp_headers(buyer))

    def out_trade_nos(self, order_id: int) -> list[str]:
        """The order's payment attempts WeChat may still be paid on (active or paid)."""
        with self.context():
            return list(
                db.session.scalars(
                    select(PaymentAttempt.out_trade_no)
                    .where(
                        PaymentAttempt.order_id == order_id,
                        PaymentAttempt.status.in_([AttemptStatus.ACTIVE, AttemptStatus.PAID]),
                    )
                    .order_by(PaymentAttempt.id)
                )
            )

    def user_pays(self, out_trade_no: str) -> Answer:
        """The user pays in WeChat (the sandbox); TRANSACTION.SUCCESS is delivered to Hongli at once."""
        response = self.sandbox.admin.post(
            f"/_sandbox/transactions/{out_trade_no}/pay", json={"mchid": self.mchid}
        )
        return Answer.of(response)

    @property
    def forger(self) -> Forger:
        """Signs notifications exactly as the sandbox's WeChat Pay would for this merchant."""
        return Forger.of_sandbox(self.sandbox.world, self.mchid, self.mp_appid)

    # ------------------------------------------------------------ reading the ledger

    def violations(self) -> set[str]:
        """Every violation the registered ledger (and rebate) checks find now."""
        with self.context():
            return {f"{r.name}: {v}" for r in run_checks() for v in r.violations}

    def wallet(self, consumer_id: int) -> dict[str, int]:
        """A consumer's buckets in fen: available, pending, withdrawing, debt (debt is ≤ 0)."""
        with self.context():
            rows = db.session.execute(
                select(LedgerAccount.kind, LedgerAccount.balance).where(
                    LedgerAccount.owner_type == OwnerType.CONSUMER,
                    LedgerAccount.owner_id == consumer_id,
                    LedgerAccount.merchant_id == self.merchant_id,
                )
            ).all()
        buckets = {"available": 0, "pending": 0, "withdrawing": 0, "debt": 0}
        for kind, balance in rows:
            buckets[kind.value.removeprefix("consumer_")] = balance.fen
        return buckets

    def balance(self, kind: AccountKind, owner_id: int | None = None) -> int:
        """The balance of one of this merchant's accounts (a campaign's when ``owner_id`` is given)."""
        query = select(LedgerAccount.balance).where(
            LedgerAccount.kind == kind, LedgerAccount.merchant_id == self.merchant_id
        )
        if owner_id is not None:
            query = query.where(LedgerAccount.owner_id == owner_id)
        with self.context():
            found = db.session.scalars(query).all()
        assert len(found) <= 1, f"{len(found)} {kind.value} accounts"
        return found[0].fen if found else 0


# ---------------------------------------------------------------- fixtures


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def race_database_url(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database: one on the test PostgreSQL server, or a file SQLite database in WAL mode."""
    if engine == "postgresql":
        return str(request.getfixturevalue("empty_database_url"))
    if engine == "pgbouncer":
        bouncer = os.environ.get("TEST_PGBOUNCER_URL")
        if not bouncer:
            pytest.fail(
                "TEST_PGBOUNCER_URL is not set: run with `make test` (it starts PgBouncer; apt install pgbouncer)"
            )
        database = make_url(str(request.getfixturevalue("empty_database_url"))).database
        return make_url(bouncer).set(database=database).render_as_string(hide_password=False)
    path = tmp_path / "race.db"
    # WAL is a property of the file: set it here too, so the suite never silently races a rollback journal.
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    connection.close()
    return f"sqlite:///{path}"


@pytest.fixture
def race_settings(engine: str, race_database_url: str, redis_url: str, tmp_path: Path) -> Settings:
    config = tmp_path / "config.toml"
    config.write_text("")
    environ = {
        "HONGLI_ENV": "test",
        "HONGLI_DATABASE__URL": race_database_url,
        "HONGLI_REDIS__URL": redis_url,
        "HONGLI_QUEUE__PREFIX": "hongli-race",
        "HONGLI_LOGGING__FORMAT": "text",
    }
    if engine == "postgresql":
        environ["HONGLI_DATABASE__POOL_SIZE"] = "60"
    if engine == "pgbouncer":
        environ["HONGLI_DATABASE__POOL_SIZE"] = "30"  # per instance; PgBouncer multiplexes them
        environ["HONGLI_DATABASE__PREPARED_STATEMENTS"] = "false"
    return load_settings(config_path=config, environ=environ)


@pytest.fixture
def race_app(race_settings: Settings, app_factory: Callable[[Settings], Flask], redis_url: str) -> Flask:
    """A migrated app on the fresh database; Redis emptied (rate limits and queues start at zero)."""
    from flask_migrate import upgrade

    connection = redis_lib.Redis.from_url(redis_url)
    connection.flushdb()
    connection.close()
    application = app_factory(race_settings)
    with application.app_context():
        upgrade()
    return application


@pytest.fixture
def race_instances(
    engine: str, race_app: Flask, race_settings: Settings, app_factory: Callable[[Settings], Flask]
) -> tuple[Flask, ...]:
    """The app instances serving the race: behind PgBouncer a second one, with its own pool."""
    if engine != "pgbouncer":
        return (race_app,)
    return (race_app, app_factory(race_settings))


def _taking_turns(apps: Sequence[Any]) -> Any:
    """One WSGI app handing each request to the next of ``apps`` (a load balancer, round robin)."""
    turn = itertools.count()

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        return apps[next(turn) % len(apps)](environ, start_response)

    return wsgi


def _over_the_network(app: Any, seconds: float) -> Any:
    """``app`` (WSGI) answering ``seconds`` after the request left and again before the answer arrives."""

    def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        time.sleep(seconds)
        body = list(app(environ, start_response))
        time.sleep(seconds)
        return body

    return wsgi


@pytest.fixture
def race_sandbox(
    race_settings: Settings, race_instances: tuple[Flask, ...], sandbox_keys: list[Any]
) -> Iterator[Sandbox]:
    """tests.sandbox.open_sandbox, but WeChat's APIs take WECHAT_LATENCY_S each way as over a network:
    in process they answer in microseconds, which leaves the windows between WeChat's answer and the
    next statement unrealistically narrow (a late payment against the close sweep would show 1 in 20)."""
    pool = itertools.cycle(sandbox_keys)
    app = create_sandbox(SandboxConfig(seed=7), clock=Clock(), key_factory=lambda: next(pool))
    wechat = race_settings.wechat
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for base in {wechat.api_base_url, wechat.pay_base_url, wechat.open_base_url}:
            route_to_wsgi(mock, base, _over_the_network(app, WECHAT_LATENCY_S))
        route_to_wsgi(mock, race_settings.web.public_base_url, _taking_turns(race_instances))
        yield Sandbox(app, world_of(app), app.test_client(), mock)


@pytest.fixture
def race(engine: str, race_app: Flask, race_instances: tuple[Flask, ...], race_sandbox: Sandbox) -> Race:
    """A merchant onboarded in the sandbox, its shop key, and a finance member's console session."""
    with race_app.app_context():
        merchant = race_sandbox.onboard("race-tea")
        finance = make_staff(merchant=merchant, role=Role.FINANCE)
        shop_key = create_shop_key(merchant_id=merchant.id, name="shop", actor=CLI).key
        db.session.commit()
        merchant_id, slug = merchant.id, merchant.slug
        mchid, mp_appid, email = merchant.mchid or "", merchant.mp_appid or "", finance.email
    login = race_app.test_client(use_cookies=False).post(
        "/api/console/v1/session", json={"email": email, "password": DEFAULT_PASSWORD}
    )
    session = login.get_json()
    assert login.status_code == 200 and isinstance(session, dict), session
    cookie = "; ".join(header.split(";", 1)[0] for header in login.headers.getlist("Set-Cookie"))
    return Race(
        engine=engine,
        app=race_app,
        sandbox=race_sandbox,
        merchant_id=merchant_id,
        slug=slug,
        mchid=mchid,
        mp_appid=mp_appid,
        shop_key=shop_key,
        console_cookie=cookie,
        console_csrf=session["csrf_token"],
        instances=race_instances,
    )
