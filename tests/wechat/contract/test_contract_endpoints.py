"""The documented development setup: every client pointed at one sandbox base URL (docs/sandbox.md)."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlsplit

import requests

from tests.wechat.contract.conftest import NOTIFY_URL, Sandbox, v3_client
from wechat.endpoints import WeChatEndpoints
from wechat.miniprogram import MiniProgramClient
from wechat.official import OfficialAccountClient
from wechat.sandbox.testing import route_to_wsgi

BASE = "http://127.0.0.1:8900"
LOCAL = WeChatEndpoints(api_base=BASE, pay_base=BASE, open_base=BASE, timeout_seconds=5)


def test_all_clients_on_one_sandbox_base_url(sandbox: Sandbox) -> None:
    route_to_wsgi(sandbox.mock, BASE, sandbox.app)
    merchant = sandbox.merchant()
    mp = sandbox.mini_program(merchant["mchid"])
    oa = sandbox.official()
    user = sandbox.user()

    code = sandbox.post(f"/users/{user['id']}/login-code", {"appid": mp["appid"]})["code"]
    openid = MiniProgramClient(mp["appid"], mp["secret"], LOCAL).code_to_session(code).openid

    oauth = OfficialAccountClient(oa["appid"], oa["secret"], LOCAL)
    url = oauth.authorize_url("https://hongli.example.test/back", state="x1").partition("#")[0]
    assert url.startswith(f"{BASE}/connect/oauth2/authorize?")
    location = requests.get(url, allow_redirects=False, timeout=5).headers["Location"]
    token = oauth.exchange_code(parse_qs(urlsplit(location).query)["code"][0])
    assert token.openid == user["openids"][oa["appid"]]

    pay = v3_client(merchant, "platform", LOCAL)
    pay.jsapi_prepay(
        appid=mp["appid"],
        description="local",
        out_trade_no="LOCAL00001",
        notify_url=NOTIFY_URL,
        amount_total=100,
        payer_openid=openid,
    )
    sandbox.post("/transactions/LOCAL00001/pay")
    sandbox.advance(86400)
    bill = pay.trade_bill(dt.date(2026, 11, 24))
    assert bill["download_url"].startswith(f"{BASE}/v3/billdownload/file?")
    assert b"`LOCAL00001" in pay.download_bill(bill)
