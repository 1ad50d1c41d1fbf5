"""Seeded determinism, the in-process router, and the real server process (start, serve, clean shutdown)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.wechat.sandbox.conftest import NOTIFY_URL, Env, make_env, v3_call

ROOT = Path(__file__).resolve().parents[3]


def _script(env: Env) -> dict[str, Any]:
    merchant = env.merchant(balance_fen=10_000)
    app = env.mini_program(merchant["mchid"])
    user = env.user()
    openid = user["openids"][app["appid"]]
    order = {
        "appid": app["appid"],
        "mchid": merchant["mchid"],
        "description": "d",
        "out_trade_no": "SEED000001",
        "notify_url": NOTIFY_URL,
        "amount": {"total": 100},
        "payer": {"openid": openid},
    }
    prepay = v3_call(env, merchant, "POST", "/v3/pay/transactions/jsapi", order).json()["prepay_id"]
    paid = env.post("/transactions/SEED000001/pay")
    code = env.post(f"/users/{user['id']}/login-code", {"appid": app["appid"]})["code"]
    note = env.notifications()[0]
    return {
        "mchid": merchant["mchid"],
        "apiv3_key": merchant["apiv3_key"],
        "serial": merchant["platform_serial"],
        "pubkey_id": merchant["public_key_id"],
        "appid": app["appid"],
        "openid": openid,
        "prepay": prepay,
        "transaction_id": paid["transaction_id"],
        "code": code,
        "note_id": note["id"],
        "body": note["body"],
    }


def test_same_seed_same_world(key_pool: Any) -> None:
    results = []
    for seed in (42, 42, 43):
        for env in make_env(key_pool, seed=seed):
            results.append(_script(env))
    first, second, other = results
    assert first == second
    assert first["prepay"] != other["prepay"]
    assert first["mchid"] != other["mchid"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_server_process_serves_and_shuts_down_cleanly(sig: signal.Signals) -> None:
    port = _free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "wechat.sandbox", "--port", str(port), "--seed", "1", "--time-scale", "60"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if requests.get(f"{base}/_sandbox/clock", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.fail("sandbox server did not start")
        app = requests.post(f"{base}/_sandbox/apps", json={"kind": "miniprogram"}, timeout=5).json()
        token = requests.get(
            f"{base}/cgi-bin/token",
            timeout=5,
            params={"grant_type": "client_credential", "appid": app["appid"], "secret": app["secret"]},
        ).json()
        assert token["expires_in"] == 7200
        assert requests.get(f"{base}/_sandbox/clock", timeout=5).json()["time_scale"] == 60
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.slow
def test_server_background_thread_retries_with_time_scale() -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from wechat.sandbox import crypto as sb_crypto

    answers = [500, 503, 204]
    got: list[int] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            status = answers[len(got)] if len(got) < len(answers) else 204
            got.append(status)
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    receiver = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    port = _free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [
            sys.executable,
            "-m",
            "wechat.sandbox",
            "--port",
            str(port),
            "--time-scale",
            "3600",
            "--tick",
            "0.05",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.get(f"{base}/_sandbox/clock", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        notify = f"http://127.0.0.1:{receiver.server_port}/notify"
        merchant = requests.post(f"{base}/_sandbox/merchants", json={"notify_url": notify}, timeout=5).json()
        app = requests.post(
            f"{base}/_sandbox/apps", json={"kind": "miniprogram", "mchids": [merchant["mchid"]]}, timeout=5
        ).json()
        user = requests.post(f"{base}/_sandbox/users", json={}, timeout=5).json()
        body = json.dumps(
            {
                "appid": app["appid"],
                "mchid": merchant["mchid"],
                "description": "d",
                "out_trade_no": "BG00000001",
                "notify_url": notify,
                "amount": {"total": 100},
                "payer": {"openid": user["openids"][app["appid"]]},
            }
        ).encode()
        key = load_pem_private_key(merchant["merchant_private_key_pem"].encode(), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        auth = sb_crypto.build_authorization(
            key,
            mchid=merchant["mchid"],
            serial_no=merchant["merchant_serial"],
            method="POST",
            canonical_url="/v3/pay/transactions/jsapi",
            body=body,
            timestamp=int(time.time()),
            nonce="abc123",
        )
        resp = requests.post(
            f"{base}/v3/pay/transactions/jsapi",
            data=body,
            timeout=5,
            headers={"Authorization": auth, "Content-Type": "application/json"},
        )
        assert resp.status_code == 200, resp.text
        requests.post(f"{base}/_sandbox/transactions/BG00000001/pay", json={}, timeout=5)
        deadline = time.monotonic() + 10
        while len(got) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got == [
            500,
            503,
            204,
        ]  # 15 s and 15 s retries compressed to ~4 ms each by the background thread
        log = requests.get(f"{base}/_sandbox/notifications", timeout=5).json()["notifications"]
        assert log[0]["state"] == "delivered"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        receiver.shutdown()
        receiver.server_close()
