"""WeChat clients share one HTTP session per thread and process, so connections are reused."""

from __future__ import annotations

import threading

import pytest
import responses

from app.gateway import clients
from app.gateway.clients import http_session, pay_client
from tests.payments.conftest import Shop


def test_clients_built_in_one_thread_share_its_session(shop: Shop) -> None:
    first = pay_client(shop.merchant)
    second = pay_client(shop.merchant)

    assert first.transport.session is second.transport.session is http_session()


def test_another_thread_has_a_session_of_its_own() -> None:
    here = http_session()
    there: list[object] = []
    worker = threading.Thread(target=lambda: there.append(http_session()))
    worker.start()
    worker.join()

    assert there and there[0] is not here


def test_a_forked_child_does_not_reuse_its_parents_session(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = http_session()
    monkeypatch.setattr(clients.os, "getpid", lambda: -1)  # as seen from a fork (an RQ work horse)

    child = http_session()

    assert child is not parent
    assert http_session() is child


def test_the_shared_session_keeps_no_cookies() -> None:
    """Every merchant's calls share it: nothing one response sets may ride along with another's call."""
    with responses.RequestsMock() as mock:
        mock.get("https://api.mch.weixin.qq.com/v3/x", headers={"Set-Cookie": "tracker=1; Path=/"})
        http_session().get("https://api.mch.weixin.qq.com/v3/x", timeout=5)

    assert len(http_session().cookies) == 0
