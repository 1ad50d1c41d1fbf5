"""`make run` anywhere: two scripts/run.sh at once on their own ports and instance directories, every URL
derived from those ports, and nothing left running after a TERM (or a Ctrl-C) to the process group."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest
import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
TOKEN_VAR = "MAKE_RUN_TEST_TOKEN"  # inherited by every process run.sh starts: how we find them all
SEEDED = re.compile(
    r"demo merchant demo-tea \w[\w ]*: mini-program (wx\w+), official account (wx\w+), mchid (\d+)"
)

pytestmark = pytest.mark.slow


@dataclass
class Run:
    web: int
    sandbox: int
    redis: int
    instance: Path
    token: str
    proc: subprocess.Popen[bytes]
    output: Path

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def text(self) -> str:
        return self.output.read_text(errors="replace")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _live_pids(token: str) -> set[int]:
    """Processes (zombies excepted) whose environment carries this run's token."""
    marker = f"{TOKEN_VAR}={token}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in environ.split(b"\0") and state != "Z":
            found.add(int(entry.name))
    return found


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _default_sigint() -> None:
    # As in a terminal: a background start would leave SIGINT ignored, and a shell cannot trap that.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(tmp_path: Path, name: str, log: IO[bytes]) -> Run:
    web, sandbox, redis_port = _free_ports(3)
    config = tmp_path / "empty.toml"
    config.write_text("")
    token = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("HONGLI_")} | {
        "HONGLI_CONFIG": str(config),
        "HONGLI_RUN_WEB_PORT": str(web),
        "HONGLI_RUN_SANDBOX_PORT": str(sandbox),
        "HONGLI_RUN_REDIS_PORT": str(redis_port),
        "HONGLI_RUN_INSTANCE": str(tmp_path / name),
        TOKEN_VAR: token,
    }
    proc = subprocess.Popen(  # noqa: S603 - our own script, fixed arguments
        [str(ROOT / "scripts" / "run.sh")],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )
    return Run(web, sandbox, redis_port, tmp_path / name, token, proc, Path(log.name))


def _wait_ready(run: Run, deadline: float) -> None:
    while time.monotonic() < deadline:
        if run.proc.poll() is not None:
            pytest.fail(f"run.sh exited with {run.proc.returncode}:\n{run.text()[-3000:]}")
        try:
            if requests.get(f"{run.url(run.web)}/readyz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    pytest.fail(f"/readyz did not answer 200 in time:\n{run.text()[-3000:]}")


def _check_derived_urls(run: Run) -> None:
    public = run.url(run.web)
    sandbox = run.url(run.sandbox)
    match = SEEDED.search(run.text())
    assert match, run.text()[-3000:]
    mini, official, mchid = match.groups()
    # The demo merchant was registered in *this* sandbox (Hongli's pay_base_url), with callbacks to *this* web.
    merchant = requests.get(f"{sandbox}/_sandbox/merchants/{mchid}", timeout=5).json()
    assert merchant["notify_url"] == f"{public}/wechat/demo-tea/pay/notify"
    # Hongli's api_base_url is this sandbox: a mini-program login through the web goes there and back.
    user = requests.post(f"{sandbox}/_sandbox/users", json={"nickname": "Port tester"}, timeout=5).json()
    code = requests.post(
        f"{sandbox}/_sandbox/users/{user['id']}/login-code", json={"appid": mini}, timeout=5
    ).json()["code"]
    login = requests.post(f"{public}/api/mp/v1/login", json={"appid": mini, "code": code}, timeout=10)
    assert login.status_code == 200, login.text
    # The sandbox calls back this web: an official-account event goes to its public URL and is answered
    # there (whatever the answer: the point is which server the sandbox reached).
    requests.post(f"{sandbox}/_sandbox/users/{user['id']}/follow", json={"appid": official}, timeout=10)
    pushes = requests.get(f"{sandbox}/_sandbox/notifications", params={"owner": official}, timeout=5).json()
    (push,) = pushes["notifications"]
    assert push["url"] == f"{public}/wechat/demo-tea/oa"
    assert push["attempts"][0]["status"] is not None, push  # an HTTP answer, not a refused connection
    # Its own Redis, keeping its data in its own instance directory, serving its worker.
    own = redis.Redis(port=run.redis, socket_timeout=5)
    try:
        assert own.config_get("dir")["dir"] == str(run.instance / "redis")
        assert own.smembers("rq:workers")
    finally:
        own.close()
    assert (run.instance / "hongli.db").is_file()


def _stop(run: Run, sig: signal.Signals) -> None:
    before = _live_pids(run.token)
    assert len(before) >= 9, before  # run.sh, tees, Redis, sandbox, gunicorn and its workers, worker
    os.killpg(run.proc.pid, sig)
    assert run.proc.wait(timeout=40) == 0, run.text()[-3000:]
    deadline = time.monotonic() + 5
    while _live_pids(run.token) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _live_pids(run.token) == set(), run.text()[-3000:]
    for pid in before:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not [port for port in (run.web, run.sandbox, run.redis) if _listening(port)]


def _kill_everything(run: Run) -> None:
    for pid in _live_pids(run.token):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if run.proc.poll() is None:
        run.proc.kill()
    run.proc.wait(timeout=10)


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[list[Run]]:
    started: list[Run] = []
    logs = [(tmp_path / f"{name}.out").open("wb") for name in ("a", "b")]
    try:
        for name, log in zip(("a", "b"), logs, strict=True):
            started.append(_start(tmp_path, name, log))
        yield started
    finally:
        for run in started:
            _kill_everything(run)
        for log in logs:
            log.close()


def test_two_instances_on_their_own_ports_and_a_complete_stop(runs: list[Run]) -> None:
    a, b = runs
    deadline = time.monotonic() + 50
    _wait_ready(a, deadline)
    _wait_ready(b, deadline)
    _check_derived_urls(a)
    _check_derived_urls(b)

    _stop(a, signal.SIGTERM)  # what `kill -TERM -<pgid>` does to `make run`
    assert requests.get(f"{b.url(b.web)}/readyz", timeout=5).status_code == 200
    _stop(b, signal.SIGINT)  # Ctrl-C
    assert (a.instance / "sandbox-state.json").is_file()
