"""A console session in tests: log in through the API, then send the CSRF and merchant headers."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.factories import DEFAULT_PASSWORD


class Console:
    """Wraps a test client logged in as one staff member, acting at ``merchant`` (a slug)."""

    def __init__(self, client: FlaskClient, merchant: str | None = None) -> None:
        self.client = client
        self.merchant = merchant
        self.csrf = ""

    def login(self, email: str, password: str = DEFAULT_PASSWORD) -> Console:
        response = self.client.post("/api/console/v1/session", json={"email": email, "password": password})
        assert response.status_code == 200, response.json
        self.csrf = response.json["csrf_token"]
        return self

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"X-CSRF-Token": self.csrf}
        if self.merchant:
            headers["X-Hongli-Merchant"] = self.merchant
        return headers | (extra or {})

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.client.get(path, headers=self.headers(kwargs.pop("headers", None)), **kwargs)

    def post(self, path: str, **kwargs: Any) -> TestResponse:
        return self.client.post(path, headers=self.headers(kwargs.pop("headers", None)), **kwargs)

    def patch(self, path: str, **kwargs: Any) -> TestResponse:
        return self.client.patch(path, headers=self.headers(kwargs.pop("headers", None)), **kwargs)

    def delete(self, path: str, **kwargs: Any) -> TestResponse:
        return self.client.delete(path, headers=self.headers(kwargs.pop("headers", None)), **kwargs)
