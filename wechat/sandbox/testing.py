"""In-process helpers: route ``requests`` traffic to WSGI apps through ``responses``, no sockets.

    app = create_sandbox(SandboxConfig(seed=1), clock=Clock(start, frozen=True))
    with sandbox_responses(app) as mock:                      # WeChat hosts → sandbox
        route_to_wsgi(mock, "https://hongli.test", hongli_app) # notifications → the merchant app
        requests.get("https://api.weixin.qq.com/cgi-bin/token?…")

A ``timeout`` fault surfaces as ``requests.exceptions.ReadTimeout`` without sleeping. Unrouted URLs raise
``ConnectionError`` (``responses`` default), so a test cannot reach the network by accident.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
import responses
from requests import PreparedRequest
from werkzeug.test import Client

from wechat.sandbox.v3 import TIMEOUT_HEADER

WECHAT_BASE_URLS = (
    "https://api.mch.weixin.qq.com",
    "https://api2.mch.weixin.qq.com",
    "https://api.weixin.qq.com",
    "https://open.weixin.qq.com",
)
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def route_to_wsgi(mock: responses.RequestsMock, base_url: str, app: Any) -> None:
    """Send every request under ``base_url`` (scheme://host[:port]) to the WSGI ``app``."""
    client = Client(app)

    def callback(req: PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        url = urlsplit(req.url or "")
        body = req.body.encode() if isinstance(req.body, str) else (req.body or b"")
        headers = {k: v for k, v in req.headers.items() if k.lower() != "content-length"}
        resp = client.open(
            path=url.path,
            query_string=url.query,
            method=req.method or "GET",
            headers=headers,
            data=body,
            base_url=f"{url.scheme}://{url.netloc}",
        )
        if resp.headers.get(TIMEOUT_HEADER) == "timeout":
            raise requests.exceptions.ReadTimeout(f"sandbox fault: timeout on {req.method} {url.path}")
        out_headers = {k: v for k, v in resp.headers.items() if k.lower() != "content-length"}
        return resp.status_code, out_headers, resp.get_data()

    pattern = re.compile(re.escape(base_url.rstrip("/")) + r"([/?].*)?$")
    for method in _METHODS:
        mock.add_callback(method, pattern, callback=callback, content_type=None)


def route_to_sandbox(
    mock: responses.RequestsMock, app: Any, base_urls: Iterable[str] = WECHAT_BASE_URLS
) -> None:
    """Route WeChat's real hosts (or ``base_urls``) to the sandbox app."""
    for base in base_urls:
        route_to_wsgi(mock, base, app)


@contextmanager
def sandbox_responses(
    app: Any, base_urls: Iterable[str] = WECHAT_BASE_URLS
) -> Iterator[responses.RequestsMock]:
    """A ``responses`` mock with WeChat hosts routed to ``app``; add more routes on the yielded mock."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        route_to_sandbox(mock, app, base_urls)
        yield mock
