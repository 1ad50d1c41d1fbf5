"""Browser tests of the console: the app served over HTTP in this process (on a database of its own, with
real commits), the WeChat sandbox in process, and Debian's Chromium driven by Playwright by executable path.

Every page a test opens is watched: any JavaScript console error, uncaught exception, refused resource
(CSP) or dialog (``alert``) fails the test. Screenshots go to ``$HONGLI_CONSOLE_SCREENSHOTS`` when set
(``docs/console/`` holds the committed ones), else to the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from werkzeug.serving import BaseWSGIServer, make_server

from app import create_app
from app.audit.service import CLI
from app.auth.principals import Role
from app.extensions import db
from app.settings import load_settings
from tests.sandbox import Sandbox, open_sandbox

PASSWORD = "console-ui-password-1"
STAFF = {
    Role.OWNER: "owner@demo-tea.test",
    Role.FINANCE: "finance@demo-tea.test",
    Role.VIEWER: "viewer@demo-tea.test",
}
DB_NAME = f"hongli_console_ui_{os.getpid()}"


def chromium_path() -> str:
    found = os.environ.get("HONGLI_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail(
            "Chromium is not installed: run the suite with `make test` (it installs Debian's chromium)"
        )
    return found


@dataclass
class Live:
    """The console served at ``url``, the sandbox, and the app for reading the ledger in the test."""

    app: Flask
    url: str
    sandbox: Sandbox
    slug: str = "demo-tea"
    screenshots: Path = field(default_factory=Path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live(redis_url: str, sandbox_keys: list[Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    from flask_migrate import upgrade

    from app.merchants.demo import seed_demo_merchant
    from app.staff.service import create_staff, get_staff_by_email, grant_role

    server_url = make_url(os.environ["TEST_DATABASE_URL"])
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {DB_NAME}"))
    port = _free_port()
    config = tmp_path_factory.mktemp("console-ui") / "config.toml"
    config.write_text("")
    settings = load_settings(
        config_path=config,
        environ={
            "HONGLI_ENV": "test",
            "HONGLI_DATABASE__URL": server_url.set(database=DB_NAME).render_as_string(hide_password=False),
            "HONGLI_REDIS__URL": redis_url,
            "HONGLI_QUEUE__PREFIX": "hongli-test-console-ui",
            "HONGLI_LOGGING__FORMAT": "text",
            "HONGLI_LOGGING__LEVEL": "WARNING",
            "HONGLI_WEB__PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        },
    )
    app = create_app(settings)
    shots = Path(os.environ.get("HONGLI_CONSOLE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        sandboxes = open_sandbox(settings, app, sandbox_keys)
        sandbox = next(sandboxes)
        stack.callback(lambda: next(sandboxes, None))
        with app.app_context():
            upgrade()
            merchant = seed_demo_merchant(actor=CLI).merchant
            for role, email in STAFF.items():
                create_staff(email=email, display_name=role.value, password=PASSWORD, actor=CLI)
                grant_role(account=get_staff_by_email(email), merchant_id=merchant.id, role=role, actor=CLI)
            db.session.commit()
        server: BaseWSGIServer = make_server("127.0.0.1", port, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, name="console-ui-server", daemon=True)
        thread.start()
        try:
            yield Live(app, f"http://127.0.0.1:{port}", sandbox, screenshots=shots)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            args=[
                "--no-sandbox",  # the suite may run as root (CI); the pages are our own
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            yield launched
        finally:
            launched.close()


class Watched:
    """A browser page whose console errors, page errors, refused requests and dialogs are collected."""

    def __init__(self, page: Any, live: Live) -> None:
        self.page = page
        self.live = live
        self.problems: list[str] = []
        page.on(
            "console",
            lambda m: self.problems.append(f"console.{m.type}: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url} {r.failure}"))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        if dialog.type == "confirm":
            dialog.accept()  # our own confirmations of actions
            return
        self.problems.append(f"dialog: {dialog.type} {dialog.message}")
        dialog.dismiss()

    def open(self, path: str) -> Any:
        response = self.page.goto(self.live.url + path)
        self.page.wait_for_load_state("load")
        return response

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.live.screenshots / f"{name}.png"), full_page=True)

    def login(self, role: Role) -> None:
        self.open("/console/login")
        self.page.fill("input[name=email]", STAFF[role])
        self.page.fill("input[name=password]", PASSWORD)
        with self.page.expect_navigation():
            self.page.click("form button[type=submit]")
        self.page.wait_for_load_state("load")

    def figure(self, key: str) -> int:
        """The fen behind a money figure on the page (``data-fen``), as the page shows it."""
        value = self.page.get_attribute(f"[data-figure='{key}']", "data-fen")
        assert value not in (None, ""), key
        return int(value)

    def text(self, selector: str) -> str:
        return str(self.page.inner_text(selector)).strip()


@pytest.fixture
def open_page(browser: Any, live: Live) -> Iterator[Any]:
    """``open_page(locale)``: a fresh browser context (no cookies) and a watched page in it."""
    opened: list[tuple[Any, Watched]] = []

    def make(locale: str = "zh-CN") -> Watched:
        context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
        watched = Watched(context.new_page(), live)
        opened.append((context, watched))
        return watched

    yield make
    problems = [problem for _, watched in opened for problem in watched.problems]
    for context, _ in opened:
        context.close()
    assert problems == [], "the browser reported problems:\n" + "\n".join(problems)


def running_campaign(live: Live, *, name: str, rules: dict[str, Any], key: str) -> int:
    """A running campaign of ``rules`` funded ¥1,000 from a ¥2,000 deposit, through the console API as the
    owner; ``key`` makes its idempotency keys this module's own."""
    from datetime import timedelta

    from app.core.db import utcnow
    from tests.console_client import Console

    api = Console(live.app.test_client(), live.slug).login(STAFF[Role.OWNER], PASSWORD)
    deposit = api.post("/api/console/v1/budget/deposits", json={"amount_fen": 200000, "idempotency_key": key})
    assert deposit.status_code == 201, deposit.json
    now = utcnow()
    created = api.post(
        "/api/console/v1/campaigns",
        json={
            "name": name,
            "starts_at": (now - timedelta(minutes=5)).isoformat(),
            "ends_at": (now + timedelta(days=30)).isoformat(),
            "rules": rules,
        },
    )
    assert created.status_code == 201, created.json
    campaign_id = int(created.json["id"])
    funded = api.post(
        f"/api/console/v1/campaigns/{campaign_id}/fund",
        json={"amount_fen": 100000, "source": "merchant", "idempotency_key": f"{key}-fund"},
    )
    assert funded.status_code in (200, 201), funded.json
    started = api.post(f"/api/console/v1/campaigns/{campaign_id}/status", json={"to": "active"})
    assert started.status_code == 200, started.json
    return campaign_id
