"""docs/sandbox.md's scripted walk runs as written against a real sandbox server process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.wechat.sandbox.test_sandbox_runtime import ROOT, _free_port


def _walk_code() -> str:
    text = (ROOT / "docs" / "sandbox.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- walk:start -->\s*```python\n(.*?)```\s*<!-- walk:end -->", text, re.S)
    assert match, "walk block missing from docs/sandbox.md"
    return match.group(1)


@pytest.mark.slow
def test_docs_walk_runs_against_server(tmp_path: Path) -> None:
    port, notify_port = _free_port(), _free_port()
    server = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "wechat.sandbox", "--port", str(port), "--seed", "3"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                requests.get(f"http://127.0.0.1:{port}/_sandbox/clock", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        script = tmp_path / "walk.py"
        script.write_text(_walk_code(), encoding="utf-8")
        env = {**os.environ, "SANDBOX_URL": f"http://127.0.0.1:{port}", "NOTIFY_PORT": str(notify_port)}
        done = subprocess.run(  # noqa: S603 - the documented script
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        assert "notification verified:" in done.stdout
    finally:
        server.terminate()
        server.wait(timeout=10)
