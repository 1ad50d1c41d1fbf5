"""Entry point: ``flask --app wsgi …`` and ``gunicorn 'wsgi:create_app()'``.

Bad configuration exits with status 2 and a message naming the key, before anything starts.
"""

from __future__ import annotations

import sys

from flask import Flask

from app import create_app as _create_app
from app.settings import SettingsError


def create_app() -> Flask:
    try:
        return _create_app()
    except SettingsError as exc:
        print(f"hongli: configuration error: {exc}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from None
