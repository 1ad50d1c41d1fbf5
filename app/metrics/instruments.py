"""The metrics code moves: counters and histograms, recorded through the functions below.

With ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn, the worker), each process writes its values to files in
that directory. RQ runs every job in a freshly forked work horse; with prometheus-client's default (one
file per pid) every job would leave files of its own, thousands a day. A work horse therefore writes under
its worker's name (:func:`use_process_identity`): a worker runs one horse at a time, so the horses of one
worker take turns on the same files, and the directory holds a bounded set of files.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import requests
from prometheus_client import Counter, Histogram, values

from wechat.gateway_log import GatewayEvent

_identity: dict[str, str | None] = {"name": None}


def _process_identifier() -> str:
    return _identity["name"] or str(os.getpid())


if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Before any metric child exists (every metric below has labels, so children are made on first use).
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_identifier)


def use_process_identity(name: str | None) -> None:
    """Write this process's metric files under ``name`` (None: the pid). Only for a process that never
    runs beside another one of the same name (an RQ work horse, named after its worker)."""
    _identity["name"] = name


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)

NOTIFICATIONS = Counter(
    "hongli_wechat_notifications",
    "WeChat Pay notifications received, by event type and what Hongli answered "
    "(applied: 2xx, also for a duplicate; rejected: signature or merchant refused; refused: not applied).",
    ["type", "result"],
)
WECHAT_CALLS = Counter(
    "hongli_wechat_calls",
    "Calls to WeChat APIs by API and outcome (ok; error: an answer WeChat marked failed; no_answer).",
    ["api", "outcome"],
)
WECHAT_CALL_SECONDS = Histogram(
    "hongli_wechat_call_seconds",
    "Time from sending a call to WeChat to its answer's headers, by API.",
    ["api"],
    buckets=LATENCY_BUCKETS,
)
JOBS = Counter(
    "hongli_jobs", "RQ jobs run, by queue and result (finished, failed, other).", ["queue", "result"]
)
JOB_SECONDS = Histogram(
    "hongli_job_seconds", "How long a job ran (its work horse), by queue.", ["queue"], buckets=JOB_BUCKETS
)
JOB_WAIT_SECONDS = Histogram(
    "hongli_job_wait_seconds",
    "How long a job waited in its queue before a worker started it, by queue.",
    ["queue"],
    buckets=JOB_BUCKETS,
)

_last_call = threading.local()


def note_response(response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
    """A ``requests`` response hook: keep how long the call took for the gateway event that reports it
    next, in this thread (the event names the API; the URL may carry ids)."""
    _last_call.seconds = response.elapsed.total_seconds()


def instrument_session(session: requests.Session) -> requests.Session:
    """``session`` with :func:`note_response` among its response hooks."""
    hooks = session.hooks.setdefault("response", [])
    if note_response not in hooks:
        hooks.append(note_response)
    return session


_NOTIFICATION_TYPE = "hongli_notification_type"


def observe_gateway_event(event: GatewayEvent) -> None:
    """Count one WeChat exchange as the gateway log records it (outbound: the call; inbound: remember
    the notification's type for :func:`count_notification`)."""
    if event.direction == "inbound":
        from flask import g, has_request_context

        if has_request_context() and event.api.startswith("notification:"):
            setattr(g, _NOTIFICATION_TYPE, event.api.removeprefix("notification:")[:40])
        return
    api = event.api[:60]
    seconds = getattr(_last_call, "seconds", None)
    _last_call.seconds = None
    if event.http_status is None:
        outcome = "no_answer"
    elif (
        event.http_status >= 400
        or event.verified is False
        or event.wechat_code not in {None, "SUCCESS", "OK"}
    ):
        outcome = "error"
    else:
        outcome = "ok"
    WECHAT_CALLS.labels(api, outcome).inc()
    if seconds is not None:
        WECHAT_CALL_SECONDS.labels(api).observe(seconds)


def count_notification(status: int, version: str) -> None:
    """Count a WeChat Pay notification answered ``status`` (in a request, after its gateway event)."""
    from flask import g

    kind = g.get(_NOTIFICATION_TYPE) or ("v2" if version == "v2" else "unknown")
    if status < 300:
        result = "applied"
    elif status in (401, 404):
        result = "rejected"
    else:
        result = "refused"
    NOTIFICATIONS.labels(kind, result).inc()


def observe_job(queue: str, result: str, run_seconds: float | None, wait_seconds: float | None) -> None:
    """Count a job that ended (in the worker, once its work horse is gone)."""
    JOBS.labels(queue, result).inc()
    if run_seconds is not None:
        JOB_SECONDS.labels(queue).observe(max(run_seconds, 0.0))
    if wait_seconds is not None:
        JOB_WAIT_SECONDS.labels(queue).observe(max(wait_seconds, 0.0))
