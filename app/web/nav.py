"""The console's navigation: one entry per page, shown to the roles that may read it.

Hooks for capabilities being built beside the console (coupons, red-packet pools, the risk review queue):
their entries appear once the capability's module exists *and* a page is registered under the endpoint
named here (``console_pages.<endpoint>``, a view guarded by :func:`app.web.guards.page`). Until then the
console shows nothing for them — no page over an API that does not exist yet.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from flask import current_app, url_for

from app.auth.principals import Role

F, R, V = Role.FINANCE, Role.REVIEWER, Role.VIEWER
ANY: tuple[Role, ...] = ()


@dataclass(frozen=True)
class Entry:
    endpoint: str
    label: str
    roles: tuple[Role, ...]  # who may read the page (as its JSON endpoint); () = every role
    module: str | None = None  # a hook: shown only once this module exists


# Read roles mirror the JSON API's (docs/console.md's table).
ENTRIES: tuple[Entry, ...] = (
    Entry("dashboard", "Dashboard", ANY),
    Entry("campaigns", "Campaigns", ANY),
    Entry("coupons", "Coupons", ANY, module="app.coupons"),
    Entry("red_packet_pools", "Red-packet pools", ANY, module="app.pools"),
    Entry("review_queue", "Review queue", (R,), module="app.risk"),
    Entry("withdrawals", "Withdrawals", (F,)),
    Entry("payouts", "Payouts", (F,)),
    Entry("reconciliation", "Reconciliation", (F,)),
    Entry("consumers", "Consumers", ANY),
    Entry("followers", "Followers", ANY),
    Entry("messages", "Messages", ANY),
    Entry("exports", "Exports", (F, V)),
    Entry("staff", "Staff", ANY),
    Entry("shop_keys", "Shop keys", (V,)),
    Entry("audit", "Audit log", (F, V)),
)


def _available(entry: Entry) -> bool:
    if f"console_pages.{entry.endpoint}" not in current_app.view_functions:
        return False
    return entry.module is None or importlib.util.find_spec(entry.module) is not None


def navigation(ctx: Any) -> list[dict[str, str]]:
    """The entries the signed-in role may open at this merchant."""
    if ctx is None:
        return []
    return [
        {
            "endpoint": entry.endpoint,
            "label": entry.label,
            "url": url_for(f"console_pages.{entry.endpoint}", slug=ctx.merchant.slug),
        }
        for entry in ENTRIES
        if _available(entry) and ctx.may(*entry.roles)
    ]
