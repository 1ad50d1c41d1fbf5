"""Run Hongli under gunicorn and measure a case against its baseline, interleaved, as a median ratio.

The machine is noisy, so absolute numbers mean little: the case and the baseline endpoint are hit
against the same server, in alternating rounds, and only the ratio of their throughputs is reported.
"""

from __future__ import annotations

import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


# A request source: given the index of a request in the case's whole run (warm-up first, then every
# round; each index exactly once, from several threads), the request to send.
RequestSource = Callable[[int], Request]


@dataclass(frozen=True)
class Paired:
    """What ``prepare`` returns when the baseline needs the case's seeding too (a token, a consumer):
    the case's request source and the baseline's."""

    case: RequestSource
    baseline: RequestSource


@dataclass(frozen=True)
class Case:
    """A benchmark: ``prepare(server, total)`` gives its source of ``total`` requests (indexes
    ``0 … total-1``, so a case can pre-build distinct ones); the baseline is ``baseline`` (``GET /healthz``
    unless said otherwise), or the one ``prepare`` pairs with the case's requests."""

    name: str
    description: str
    prepare: Callable[[Server, int], RequestSource | Paired]
    goal_ratio: float
    baseline: Request = Request("GET", "/healthz")
    expect_status: tuple[int, ...] = (200, 204)
    baseline_label: str = "GET /healthz"
    baseline_status: tuple[int, ...] = (200,)
    # Clients of the case and of its baseline (default: ``--concurrency``): a case measuring how a path
    # scales runs the same requests with many clients against a baseline of one.
    concurrency: int | None = None
    baseline_concurrency: int | None = None


@dataclass
class Server:
    host: str
    port: int
    env: dict[str, str]


def _throughput(
    server: Server,
    source: RequestSource,
    requests: int,
    concurrency: int,
    ok: tuple[int, ...],
    first: int = 0,
) -> float:
    """Requests per second for requests ``first … first+requests-1`` over ``concurrency`` keep-alive
    connections."""
    counter = iter(range(first, first + requests))
    lock = threading.Lock()
    failures: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                break
            req = source(index)
            conn.request(req.method, req.path, body=req.body or None, headers=req.headers)
            response = conn.getresponse()
            response.read()
            if response.status not in ok:
                failures.append(f"{req.method} {req.path} -> {response.status}")
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} unexpected responses, first: {failures[0]}")
    return requests / elapsed


def measure(server: Server, case: Case, rounds: int, requests: int, concurrency: int) -> dict[str, float]:
    """Alternate baseline and case rounds (after a warm-up of each); report medians and the median ratio."""
    warm_up = requests // 4 or 1
    prepared = case.prepare(server, warm_up + rounds * requests)
    if isinstance(prepared, Paired):
        source, baseline_source = prepared.case, prepared.baseline
    else:
        source, baseline_source = prepared, lambda _i: case.baseline
    clients = case.concurrency or concurrency
    baseline_clients = case.baseline_concurrency or concurrency
    _throughput(server, baseline_source, warm_up, baseline_clients, case.baseline_status)
    _throughput(server, source, warm_up, clients, case.expect_status)
    base_rates, case_rates, ratios = [], [], []
    for round_ in range(rounds):
        first = warm_up + round_ * requests
        base = _throughput(server, baseline_source, requests, baseline_clients, case.baseline_status, first)
        rate = _throughput(server, source, requests, clients, case.expect_status, first)
        base_rates.append(base)
        case_rates.append(rate)
        ratios.append(rate / base)
    return {
        "baseline_rps": statistics.median(base_rates),
        "case_rps": statistics.median(case_rates),
        "ratio": statistics.median(ratios),
    }


@contextmanager
def bench_database() -> Iterator[str]:
    """A fresh database on the throwaway server from ``scripts/with-services.sh``."""
    server = make_url(os.environ["TEST_DATABASE_URL"])
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS hongli_bench WITH (FORCE)"))
        conn.execute(text("CREATE DATABASE hongli_bench"))
    try:
        yield server.set(database="hongli_bench").render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text("DROP DATABASE IF EXISTS hongli_bench WITH (FORCE)"))
        admin.dispose()


@contextmanager
def running_server(workers: int = 2, threads: int = 4) -> Iterator[Server]:
    """Hongli under gunicorn (the `make run` configuration), migrated, on a free port."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with bench_database() as database_url, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text("")
        env = {k: v for k, v in os.environ.items() if not k.startswith("HONGLI_")} | {
            "HONGLI_CONFIG": str(config),
            "HONGLI_ENV": "test",
            "HONGLI_DATABASE__URL": database_url,
            "HONGLI_REDIS__URL": os.environ["TEST_REDIS_URL"],
            "HONGLI_QUEUE__PREFIX": "hongli-bench",
            "HONGLI_LOGGING__LEVEL": "WARNING",
        }
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        process = subprocess.Popen(
            [
                gunicorn,
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--preload",
                "--log-level",
                "warning",
                "wsgi:create_app()",
            ],
            cwd=ROOT,
            env=env,
        )
        # /readyz is ready only while a worker beats for every queue; the bench runs no worker (its jobs
        # would compete with the server for the two cores), so it beats for one, as a worker would.
        beating = _heartbeats(env)
        try:
            server = Server("127.0.0.1", port, env)
            _wait_until_ready(server)
            yield server
        finally:
            beating.stop()
            process.terminate()
            process.wait(timeout=30)


def _heartbeats(env: dict[str, str]) -> Any:
    from app import create_app
    from app.queue.heartbeat import HeartbeatWriter
    from app.queue.queues import QueueName
    from app.settings import load_settings

    writer = HeartbeatWriter(create_app(load_settings(environ=env)), list(QueueName))
    writer.start()
    return writer


def _wait_until_ready(server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(server.host, server.port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become ready")
