"""`make run` as an operator sees it: /metrics parses with Prometheus' text parser and its counters move
with the seed scenario (docs/quickstart.md, walked as written); then Redis is killed (SIGKILL) and
`make run` keeps serving — its Redis comes back, the same worker process takes jobs again."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
import requests
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue
from rq.job import Job, JobStatus

from tests.test_make_run import Run, _kill_everything, _live_pids, _start, _wait_ready
from tests.test_quickstart import _walk

pytestmark = pytest.mark.slow
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(run: Run) -> Samples:
    response = requests.get(f"{run.url(run.web)}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over every sample carrying ``labels`` (and any others)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def _cmdline(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _redis_server(run: Run) -> int:
    """The redis-server on the run's port (it rewrites its title and environment: found by its title)."""
    title = f"redis-server 127.0.0.1:{run.redis}".encode()
    (pid,) = [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _cmdline(int(p.name))[:1] == [title]
    ]
    return pid


def _worker(run: Run) -> int:
    workers = {p for p in _live_pids(run.token) if b"worker" in _cmdline(p) and b"wsgi" in _cmdline(p)}
    (main,) = [p for p in workers if _ppid(p) not in workers]  # not its scheduler or work horse
    return main


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    with (tmp_path / "run.out").open("wb") as log:
        started = _start(tmp_path, "ops", log)
        try:
            yield started
        finally:
            _kill_everything(started)


def test_metrics_move_with_the_seed_scenario_and_make_run_rides_through_a_redis_kill(
    run: Run, tmp_path: Path
) -> None:
    _wait_ready(run, time.monotonic() + 60)
    before = scrape(run)
    _walk(run, tmp_path)  # the seed scenario: two orders paid, a rebate settled and withdrawn, ledger check
    after = scrape(run)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    # Counters of the gunicorn workers and of the worker, added up across processes (multiprocess mode).
    assert moved("hongli_wechat_notifications_total", type="TRANSACTION.SUCCESS", result="applied") >= 2
    assert moved("hongli_wechat_calls_total", outcome="ok") >= 4  # prepays, queries, the transfer bill
    assert moved("hongli_wechat_call_seconds_count") >= 4
    assert moved("hongli_jobs_total", queue="payouts", result="finished") >= 1  # the withdrawal's payout
    assert moved("hongli_job_seconds_count", queue="payouts") >= 1
    # Read from the database and Redis at scrape time.
    assert total(after, "hongli_payouts", status="succeeded", rail="transfer_bill") == 1
    assert total(after, "hongli_queue_jobs", queue="payouts") == 0
    assert 0 <= total(after, "hongli_worker_heartbeat_age_seconds", queue="payouts") < 60
    # The walk's `flask ledger check` (a process of its own) left its result for the scrape.
    assert total(after, "hongli_ledger_check_violations") == 0
    assert total(after, "hongli_ledger_check_timestamp_seconds") > time.time() - 600
    assert (
        total(after, "hongli_up", dependency="redis") == total(after, "hongli_up", dependency="database") == 1
    )

    # Redis dies. make run's supervisor starts it again (with its AOF); nothing else stops.
    redis_pid, worker_pid = _redis_server(run), _worker(run)
    os.kill(redis_pid, signal.SIGKILL)
    assert requests.get(f"{run.url(run.web)}/healthz", timeout=5).status_code == 200

    def back() -> bool:
        try:
            pid = _redis_server(run)
        except ValueError:
            return False
        return pid != redis_pid and requests.get(f"{run.url(run.web)}/readyz", timeout=5).status_code == 200

    deadline = time.monotonic() + 60
    while not back():
        assert run.proc.poll() is None, run.text()[-3000:]
        assert time.monotonic() < deadline, run.text()[-3000:]
        time.sleep(0.2)
    assert run.proc.poll() is None and _worker(run) == worker_pid
    # The same worker process takes a job from the restarted Redis.
    connection = redis_lib.Redis(port=run.redis, socket_timeout=10)
    try:
        job = Queue("hongli-default", connection=connection).enqueue("jobs.maintenance.record_heartbeat")
        deadline = time.monotonic() + 60
        while Job.fetch(job.id, connection=connection).get_status() != JobStatus.FINISHED:
            assert time.monotonic() < deadline, run.text()[-3000:]
            time.sleep(0.2)
    finally:
        connection.close()
    assert scrape(run)[("hongli_up", (("dependency", "redis"),))] == 1
