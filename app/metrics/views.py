"""``GET /metrics``: the Prometheus text format, for a scraper holding ``metrics.token`` (or, without a
token, a client on this machine)."""

from __future__ import annotations

import hmac
import ipaddress
import os

from flask import Blueprint, Response, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from app.auth.guards import public
from app.core.errors import Forbidden, NotFound, Unauthenticated
from app.metrics.collectors import StateCollector
from app.settings import Settings

bp = Blueprint("metrics", __name__)


def _local_client() -> bool:
    if request.headers.get("X-Forwarded-For") or request.headers.get("Forwarded"):
        return False  # came through a proxy: whoever sent it is elsewhere
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def _authorise(settings: Settings) -> None:
    if not settings.metrics.enabled:
        raise NotFound("metrics are disabled (metrics.enabled)")
    token = settings.metrics.token.get_secret_value()
    if not token:
        if not _local_client():
            raise Forbidden("metrics answer only clients on this machine unless metrics.token is set")
        return
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
        raise Unauthenticated("metrics need Authorization: Bearer <metrics.token>")


@bp.get("/metrics")
@public  # guarded by metrics.token or the client's address, checked in the view
def metrics() -> Response:
    """Every process's counters (all of this machine's with ``PROMETHEUS_MULTIPROC_DIR``), and figures
    read now from the database and Redis."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    _authorise(app.extensions["hongli.settings"])
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    state = CollectorRegistry()
    state.register(StateCollector(app))
    return Response(body + generate_latest(state), mimetype=CONTENT_TYPE_LATEST)
