"""The merchant console's pages (``/console/…``): server-rendered Jinja2 over the same services the JSON
API calls, zh-CN first. Guards in :mod:`app.web.guards`, text in :mod:`app.web.i18n`."""

from __future__ import annotations

import importlib

from flask import Flask

# Each module adds its routes to the one blueprint (app.web.blueprint.bp).
PAGE_MODULES = (
    "pages_session",
    "pages_campaigns",
    "pages_money",
    "pages_people",
    "pages_exports",
    "pages_coupons",
    "pages_messages",
    "pages_pools",
    "pages_review",
)


def init_console_pages(flask_app: Flask) -> None:
    """Register the pages' blueprint, with the routes of every page module."""
    for name in PAGE_MODULES:
        importlib.import_module(f"app.web.{name}")
    from app.web.blueprint import bp

    flask_app.register_blueprint(bp)
