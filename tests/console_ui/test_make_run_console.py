"""`make run` prints the console's URL and the demo owner's login, and that login opens the console."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import requests

from tests.test_make_run import _kill_everything, _start, _wait_ready

pytestmark = pytest.mark.slow

BANNER = re.compile(r"console\s+(http://\S+/console/)\s+\(demo login: (\S+@\S+) / (\S+)\)")


def test_make_run_prints_the_console_and_its_demo_login(tmp_path: Path) -> None:
    with (tmp_path / "run.out").open("wb") as log:
        run = _start(tmp_path, "console", log)
        try:
            _wait_ready(run, time.monotonic() + 50)
            deadline = time.monotonic() + 20
            while not (found := BANNER.search(run.text())) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert found, run.text()[-3000:]
            url, email, password = found.groups()
            assert url == run.url(run.web) + "/console/"
            assert email == "owner@demo-tea.test"
            browser = requests.Session()
            page = browser.get(url + "login", headers={"Accept": "text/html"}, timeout=10)
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert page.status_code == 200 and token, page.text[:500]
            login = browser.post(
                url + "login",
                data={"email": email, "password": password, "csrf_token": token.group(1)},
                headers={"Accept": "text/html"},
                timeout=10,
            )
            assert login.status_code == 200 and login.url.endswith("/console/m/demo-tea/"), login.url
            assert 'data-widget="funnel"' in login.text
        finally:
            _kill_everything(run)
