"""Scale-out in one run: the bench cases on one instance, on two instances, and on two instances behind
PgBouncer (transaction pooling), each on a fresh database, with where the CPU went.

``scripts/with-services.sh .venv/bin/python -m bench.scale [case …] [--rounds N] [--requests N]``
(``make bench-scale``). An instance is the `make run` web: gunicorn, 2 workers × 4 threads. Two instances
are two such gunicorns; the bench's clients spread their keep-alive connections over them (each client
connection goes to the next instance in turn). For every case the script prints, per configuration, the
case's ratio to ``GET /healthz`` on the same servers (as ``make bench``), its throughput relative to one
instance, and the share of CPU time the web, PostgreSQL, PgBouncer and the bench client itself took
while the case ran — the machine-level profile that says where the next bottleneck is.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from bench.cases import CASES
from bench.harness import ROOT, Server, _wait_until_ready, bench_database, measure

DEFAULT_CASES = ("readyz", "notify-full", "paid-order", "wallet-read")
CONFIGS = ("one instance", "two instances", "two + PgBouncer")
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Spread:
    """A ``bench.harness.Server`` whose ``port`` is the next instance's each time it is read: every client
    connection the harness opens goes to the next instance (a round-robin balancer without a hop)."""

    host: str
    ports: list[int]
    env: dict[str, str]
    _turn: Iterator[int] = field(init=False)

    def __post_init__(self) -> None:
        self._turn = itertools.cycle(self.ports)

    @property
    def port(self) -> int:
        return next(self._turn)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _instances(
    count: int, database_url: str, pgbouncer: bool, log: Path
) -> Iterator[tuple[Spread, list[int]]]:
    """``count`` gunicorn instances on one migrated database, logging to ``log``; yields the spread and
    their pids."""
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        config = Path(tmp) / "config.toml"
        config.write_text("")
        env = {k: v for k, v in os.environ.items() if not k.startswith("HONGLI_")} | {
            "HONGLI_CONFIG": str(config),
            "HONGLI_ENV": "test",
            "HONGLI_DATABASE__URL": database_url,
            "HONGLI_REDIS__URL": os.environ["TEST_REDIS_URL"],
            "HONGLI_QUEUE__PREFIX": "hongli-bench",
            "HONGLI_QUEUE__WORKER_HEARTBEAT_MAX_AGE_SECONDS": "0",  # no worker in a web benchmark
            "HONGLI_LOGGING__LEVEL": "WARNING",
        }
        if pgbouncer:
            env["HONGLI_DATABASE__PREPARED_STATEMENTS"] = "false"
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        ports, procs = [], []
        out = stack.enter_context(log.open("ab"))
        for _ in range(count):
            port = _free_port()
            proc = subprocess.Popen(
                [
                    gunicorn,
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--workers",
                    "2",
                    "--threads",
                    "4",
                    "--preload",
                    "--log-level",
                    "warning",
                    "wsgi:create_app()",
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            stack.callback(proc.wait, 30)
            stack.callback(proc.terminate)
            ports.append(port)
            procs.append(proc.pid)
        for port in ports:
            _wait_until_ready(Server("127.0.0.1", port, env))
        yield Spread("127.0.0.1", ports, env), procs


# ---------------------------------------------------------------- where the CPU went


def _stat(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _children(pid: int) -> set[int]:
    return {
        int(e.name)
        for e in Path("/proc").iterdir()
        if e.name.isdigit() and _stat(int(e.name))[1:2] == [str(pid)]
    }


def _tree_cpu(roots: set[int]) -> float:
    """CPU seconds of each root, of the children it has reaped (cutime, cstime) and of its live children:
    a process that ends between two readings moves from the last term to the second, so differences hold."""
    ticks = 0
    for root in roots:
        fields = _stat(root)
        if fields:
            ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        for child in _children(root):
            ticks += sum(int(f) for f in _stat(child)[11:13])
    return ticks / CLK_TCK


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _matching(text: str) -> set[int]:
    return {
        int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and text in _cmdline(int(e.name))
    }


def _roots(web: list[int]) -> dict[str, set[int]]:
    """This run's processes by role, as the roots of their trees (the machine may run other PostgreSQL
    servers: only ours count)."""
    pg_port = make_url(os.environ["TEST_DATABASE_URL"]).port
    postmasters = {
        p for p in _matching(f"-p {pg_port} ") if _cmdline(p).split(" ", 1)[0].endswith("postgres")
    }
    # with-services.sh keeps PgBouncer's files beside the PostgreSQL data directory (one per run).
    workdirs = {
        _cmdline(p).split(" -k ", 1)[1].split()[0].rsplit("/", 1)[0]
        for p in postmasters
        if " -k " in _cmdline(p)
    }
    redis_port = make_url(os.environ["TEST_REDIS_URL"]).port
    return {
        "web": set(web),
        "postgres": postmasters,
        "pgbouncer": {p for w in workdirs for p in _matching(f"{w}/pgbouncer/pgbouncer.ini")},
        "redis": _matching(f"redis-server 127.0.0.1:{redis_port}"),
        "bench": {os.getpid()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("cases", nargs="*", help=f"case names (default: {' '.join(DEFAULT_CASES)})")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    wanted = args.cases or list(DEFAULT_CASES)
    chosen = [c for c in CASES if c.name in wanted]
    if len(chosen) != len(wanted):
        parser.error(f"unknown case; known: {', '.join(c.name for c in CASES)}")
    bouncer = os.environ.get("TEST_PGBOUNCER_URL")
    if not bouncer:
        parser.error(
            "TEST_PGBOUNCER_URL is not set: run under scripts/with-services.sh with pgbouncer installed"
        )
    results: dict[tuple[str, str], dict[str, float]] = {}
    log = Path(tempfile.mkdtemp()) / "web.log"
    log.touch()
    for config in CONFIGS:
        with bench_database() as direct:
            url = direct
            if config.endswith("PgBouncer"):
                url = (
                    make_url(bouncer)
                    .set(database=make_url(direct).database)
                    .render_as_string(hide_password=False)
                )
            count = 1 if config == "one instance" else 2
            with _instances(count, url, config.endswith("PgBouncer"), log) as (spread, pids):
                for case in chosen:
                    roots = _roots(pids)
                    before = {name: _tree_cpu(p) for name, p in roots.items()}
                    started = time.monotonic()
                    lost_before = log.read_text(errors="replace").count("lost to a concurrent transaction")
                    # A request that lost to a concurrent transaction (a deadlock) answers 503 and changes
                    # nothing: counted here (and in the rate), reported beside it, not a crash of the run.
                    tolerant = dataclasses.replace(case, expect_status=(*case.expect_status, 503))
                    result = measure(spread, tolerant, args.rounds, args.requests, args.concurrency)  # type: ignore[arg-type]
                    result["lost"] = (
                        log.read_text(errors="replace").count("lost to a concurrent transaction")
                        - lost_before
                    )
                    wall = time.monotonic() - started
                    for name, p in roots.items():
                        result[f"cpu_{name}"] = _tree_cpu(p) - before[name]
                    result["wall"] = wall
                    results[config, case.name] = result
                    print(
                        f"{config:<18} {case.name:<16} {result['case_rps']:>8.0f} rps  ratio {result['ratio']:.2f}",
                        flush=True,
                    )
    print()
    print(
        f"{'case':<16}{'configuration':<19}{'healthz rps':>12}{'case rps':>10}{'ratio':>7}{'× one':>7}   CPU share: web / postgres / pgbouncer / redis / bench client (of {os.cpu_count()} cores busy)"
    )
    for case in chosen:
        one = results["one instance", case.name]["case_rps"]
        for config in CONFIGS:
            r = results[config, case.name]
            cpu = {k: r[f"cpu_{k}"] for k in ("web", "postgres", "pgbouncer", "redis", "bench")}
            busy = sum(cpu.values())
            shares = " / ".join(f"{100 * v / busy:.0f}%" for v in cpu.values()) if busy else "-"
            cores = busy / r["wall"]
            print(
                f"{case.name:<16}{config:<19}{r['baseline_rps']:>12.0f}{r['case_rps']:>10.0f}{r['ratio']:>7.2f}"
                f"{r['case_rps'] / one:>7.2f}   {shares} ({cores:.2f})"
                + (f"  {r['lost']:.0f} answered 503 (deadlock / serialization)" if r["lost"] else "")
            )
    print(f"web log: {log}")


if __name__ == "__main__":
    main()
