"""Many processes, one database: two web instances (gunicorn) and two workers, all behind PgBouncer in
transaction pooling with ``database.prepared_statements = false``, behind a round-robin balancer — the
seed scenario (docs/quickstart.md, walked as written) and the HTTP money races (scripts/probe-races.py)
run against it, and the books are clean afterwards.

PgBouncer is the one ``scripts/with-services.sh`` starts (``TEST_PGBOUNCER_URL``); the database is a fresh
one on the test server, reached only through PgBouncer, migrations included.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from sqlalchemy.engine import make_url

from tests.payouts.test_worker_crash import _free_port
from tests.queue.test_redis_outage import RedisServer
from tests.test_quickstart import _walk

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


class _Balancer(socketserver.ThreadingTCPServer):
    """A TCP load balancer on 127.0.0.1: each connection goes to the next backend port, in turn."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, backends: list[int]) -> None:
        self._turn = itertools.cycle(backends)
        self._lock = threading.Lock()
        self.served: dict[int, int] = dict.fromkeys(backends, 0)
        super().__init__(("127.0.0.1", port), _Pipe)

    def next_backend(self) -> int:
        with self._lock:
            port = next(self._turn)
            self.served[port] += 1
            return port


class _Pipe(socketserver.BaseRequestHandler):
    server: _Balancer

    def handle(self) -> None:
        with socket.create_connection(("127.0.0.1", self.server.next_backend())) as upstream:
            back = threading.Thread(target=_pump, args=(upstream, self.request), daemon=True)
            back.start()
            _pump(self.request, upstream)
            back.join(timeout=120)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@dataclass
class Deployment:
    env: dict[str, str]
    instance: Path
    public: str
    sandbox: str
    logs: Path
    balancer: _Balancer
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> None:
        out = (self.logs / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(  # noqa: S603 - our own programs, fixed arguments
            list(args), cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()

    def flask(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "flask", "--app", "wsgi", *args],
            cwd=ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"flask {' '.join(args)}: {done.stdout}\n{done.stderr[-3000:]}"
        return done.stdout

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def logs_text(self) -> str:
        return "\n".join(f"--- {n}\n{self.log(n)[-2000:]}" for n in self.procs)


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _wait_for(deployment: Deployment, url: str, what: str) -> None:
    deadline = time.monotonic() + 90
    while not _up(url):
        dead = [n for n, p in deployment.procs.items() if p.poll() is not None]
        assert not dead, f"{dead} exited:\n{deployment.logs_text()}"
        assert time.monotonic() < deadline, f"{what} not ready:\n{deployment.logs_text()}"
        time.sleep(0.3)


@pytest.fixture
def deployment(empty_database_url: str, tmp_path: Path) -> Iterator[Deployment]:
    bouncer = os.environ.get("TEST_PGBOUNCER_URL")
    if not bouncer:
        pytest.fail(
            "TEST_PGBOUNCER_URL is not set: run with `make test` (it starts PgBouncer; apt install pgbouncer)"
        )
    database = make_url(bouncer).set(database=make_url(empty_database_url).database)
    redis_server = RedisServer(_free_port(), tmp_path)
    redis_server.start()
    web_a, web_b, front, sandbox_port = _free_port(), _free_port(), _free_port(), _free_port()
    balancer = _Balancer(front, [web_a, web_b])
    threading.Thread(target=balancer.serve_forever, daemon=True).start()
    config = tmp_path / "empty.toml"  # _walk points the walk's flask commands here too
    config.write_text("")
    instance = tmp_path / "instance"
    metrics = tmp_path / "metrics"
    (tmp_path / "logs").mkdir()
    instance.mkdir()
    metrics.mkdir()
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    public = f"http://127.0.0.1:{front}"
    settings = {
        "HONGLI_CONFIG": str(config),
        "HONGLI_DATABASE__URL": database.render_as_string(hide_password=False),
        "HONGLI_DATABASE__PREPARED_STATEMENTS": "false",
        "HONGLI_REDIS__URL": redis_server.url,
        "HONGLI_WEB__PUBLIC_BASE_URL": public,
        "HONGLI_WECHAT__API_BASE_URL": sandbox,
        "HONGLI_WECHAT__PAY_BASE_URL": sandbox,
        "HONGLI_WECHAT__OPEN_BASE_URL": sandbox,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("HONGLI_")} | settings
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    deployment = Deployment(env, instance, public, sandbox, tmp_path / "logs", balancer)
    try:
        deployment.flask("db", "upgrade")  # through PgBouncer too
        deployment.start("sandbox", sys.executable, "-m", "wechat.sandbox", "--port", str(sandbox_port))
        _wait_for(deployment, f"{sandbox}/_sandbox/clock", "the sandbox")
        deployment.flask("merchants", "seed-demo")
        password = "deployment-owner-password"
        deployment.flask(
            "staff", "create", "--email", "owner@demo-tea.test", "--name", "Owner", "--merchant", "demo-tea",
            "--role", "owner", "--password-stdin", stdin=password + "\n",
        )  # fmt: skip
        key = (
            deployment.flask("shop-keys", "create", "--merchant", "demo-tea", "--name", "shop")
            .strip()
            .splitlines()[-1]
        )
        # What make run writes, read by the walk-through and the race probe.
        (instance / "demo-credentials.txt").write_text(
            f"console login: owner@demo-tea.test / {password}\nshop API key: {key}\n"
        )
        (instance / "run.env").write_text("".join(f"export {k}='{v}'\n" for k, v in settings.items()))
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        for name, port in (("web-a", web_a), ("web-b", web_b)):
            deployment.start(
                name, gunicorn, "-c", "python:app.metrics.gunicorn", "--bind", f"127.0.0.1:{port}",
                "--workers", "1", "--threads", "4", "--preload", "wsgi:create_app()",
            )  # fmt: skip
        deployment.start("worker-1", sys.executable, "-m", "flask", "--app", "wsgi", "worker")
        deployment.start("worker-2", sys.executable, "-m", "flask", "--app", "wsgi", "worker")
        for port in (web_a, web_b):  # each instance: database via PgBouncer, migrations, Redis, workers
            _wait_for(deployment, f"http://127.0.0.1:{port}/readyz", f"web on {port}")
        yield deployment
    finally:
        for proc in deployment.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in deployment.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        balancer.shutdown()
        balancer.server_close()
        redis_server.kill()


def _served_by_both(deployment: Deployment) -> None:
    """Both instances served (the balancer alternates connections), both workers ran jobs, nobody died,
    and no prepared statement reached PgBouncer (none of the errors transaction pooling gives them)."""
    assert all(n >= 5 for n in deployment.balancer.served.values()), deployment.balancer.served
    for name in ("web-a", "web-b"):
        assert '"message": "request"' in deployment.log(name), deployment.log(name)[-2000:]
    for name in ("worker-1", "worker-2"):
        assert "Job OK" in deployment.log(name), deployment.log(name)[-3000:]
    assert not [n for n, p in deployment.procs.items() if p.poll() is not None], deployment.logs_text()
    assert "prepared statement" not in deployment.logs_text()
    assert "ledger clean" in deployment.flask("ledger", "check")


# Each on a deployment of its own: the walk-through moves the business clock 8 days on (and expects the
# first ids of a fresh database), the races create campaigns in real time.
def test_seed_scenario_on_two_instances_and_two_workers_behind_pgbouncer(
    deployment: Deployment, tmp_path: Path
) -> None:
    @dataclass
    class Instance:
        instance: Path

    # Every figure the page prints is checked against its expected output, and ends with `ledger check`.
    _walk(Instance(deployment.instance), tmp_path)  # type: ignore[arg-type]
    _served_by_both(deployment)


def test_money_races_on_two_instances_and_two_workers_behind_pgbouncer(deployment: Deployment) -> None:
    # Over HTTP: 8 approvals of one withdrawal, one red packet on two orders, a daily limit, one idempotency
    # key; then `ledger check` and `payouts check`. Exit 0 only if every race and both checks passed.
    probe = subprocess.run(  # noqa: S603
        [
            sys.executable, str(ROOT / "scripts" / "probe-races.py"), "--base", deployment.public,
            "--sandbox", deployment.sandbox, "--credentials", str(deployment.instance / "demo-credentials.txt"),
            "--rounds", "3",
        ],
        cwd=ROOT,
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert probe.returncode == 0, f"{probe.stdout[-4000:]}\n{probe.stderr[-3000:]}\n{deployment.logs_text()}"
    assert "prepared statement" not in probe.stdout + probe.stderr
    _served_by_both(deployment)
