"""``--tls``: HTTPS with a sandbox CA; v2 money APIs demand the merchant's API client certificate (§4.1)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from wechatpy.exceptions import WeChatPayException
from wechatpy.pay import WeChatPay as WeChatPayV2

from tests.wechat.sandbox.test_sandbox_runtime import ROOT, _free_port


@pytest.mark.slow
def test_v2_requires_merchant_client_certificate(tmp_path: Path) -> None:
    port = _free_port()
    ca = tmp_path / "ca.pem"
    proc = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "wechat.sandbox", "--port", str(port), "--tls", "--ca-out", str(ca)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"https://127.0.0.1:{port}"
    try:
        for _ in range(200):
            if ca.exists():
                try:
                    requests.get(f"{base}/_sandbox/clock", timeout=1, verify=str(ca))
                    break
                except requests.ConnectionError:
                    pass
            time.sleep(0.05)
        else:
            pytest.fail("TLS sandbox did not start")

        def admin(path: str, body: dict[str, object]) -> dict[str, Any]:
            return dict(requests.post(f"{base}/_sandbox{path}", json=body, timeout=5, verify=str(ca)).json())

        merchant = admin("/merchants", {"balance_fen": 10_000})
        other = admin("/merchants", {})
        oa = admin("/apps", {"kind": "official", "mchids": [merchant["mchid"]]})
        openid = admin("/users", {})["openids"][oa["appid"]]
        for name, value in (
            ("cert.pem", merchant["merchant_certificate_pem"]),
            ("key.pem", merchant["merchant_private_key_pem"]),
            ("other.pem", other["merchant_certificate_pem"]),
            ("other.key", other["merchant_private_key_pem"]),
        ):
            (tmp_path / name).write_text(value)

        class SandboxPay(WeChatPayV2):
            API_BASE_URL = f"{base}/"

        def send(client: WeChatPayV2) -> dict[str, str]:
            client._http.verify = str(ca)
            client._http.trust_env = (
                False  # else REQUESTS_CA_BUNDLE from the environment beats session.verify
            )
            return dict(
                client.redpack.send(
                    openid,
                    500,
                    "洪利",
                    "返利",
                    "恭喜",
                    "备注",
                    client_ip="127.0.0.1",
                    out_trade_no="TLS000000000000000000000001",
                )
            )

        bare = SandboxPay(appid=oa["appid"], api_key=merchant["v2_key"], mch_id=merchant["mchid"])
        with pytest.raises(WeChatPayException) as exc:
            send(bare)
        assert exc.value.errcode == "CA_ERROR"
        wrong = SandboxPay(
            appid=oa["appid"],
            api_key=merchant["v2_key"],
            mch_id=merchant["mchid"],
            mch_cert=str(tmp_path / "other.pem"),
            mch_key=str(tmp_path / "other.key"),
        )
        with pytest.raises(WeChatPayException) as exc:
            send(wrong)
        assert exc.value.errcode == "CA_ERROR"
        good = SandboxPay(
            appid=oa["appid"],
            api_key=merchant["v2_key"],
            mch_id=merchant["mchid"],
            mch_cert=str(tmp_path / "cert.pem"),
            mch_key=str(tmp_path / "key.pem"),
        )
        assert send(good)["result_code"] == "SUCCESS"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
