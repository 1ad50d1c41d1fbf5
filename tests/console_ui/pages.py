"""Helpers for the console pages through Flask's test client: log in with the form, post forms with CSRF."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.factories import DEFAULT_PASSWORD

HTML = {"Accept": "text/html"}
_TOKEN = re.compile(r'name="csrf_token" value="([^"]*)"')


def token_of(html: str) -> str:
    found = _TOKEN.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


class Browser:
    """A test client that behaves like a browser on the console: HTML in, forms out."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.csrf = ""

    def login(self, email: str, password: str = DEFAULT_PASSWORD) -> TestResponse:
        page = self.client.get("/console/login", headers=HTML)
        response = self.client.post(
            "/console/login",
            data={"email": email, "password": password, "csrf_token": token_of(page.text)},
            headers=HTML,
        )
        if response.status_code == 303:
            home = self.client.get("/console/?all=1", headers=HTML)
            self.csrf = token_of(home.text)
        return response

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.client.get(path, headers=HTML, **kwargs)

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True) -> TestResponse:
        body = dict(data or {})
        if csrf:
            body.setdefault("csrf_token", self.csrf)
        return self.client.post(path, data=body, headers=HTML)
