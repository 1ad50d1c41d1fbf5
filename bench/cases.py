"""The registered benchmark cases. Each later capability adds its own here."""

from __future__ import annotations

from bench.harness import Case, Request, RequestSource, Server


def _readiness(server: Server) -> RequestSource:
    request = Request("GET", "/readyz")
    return lambda _i: request


CASES: tuple[Case, ...] = (
    Case(
        name="readyz",
        description="readiness probe (a database query and a Redis ping) vs /healthz",
        prepare=_readiness,
        goal_ratio=0.2,
    ),
)
