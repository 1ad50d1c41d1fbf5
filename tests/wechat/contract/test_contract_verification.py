"""Our clients refuse sandbox answers that were tampered with on the way (§3.3, §4.2).

A man in the middle (``tampering`` WSGI middleware on another host) rewrites one answer; the request still
reached the sandbox, so a refused money answer must be ambiguous and recoverable with the same key.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest
from werkzeug.wrappers import Response

from tests.wechat.contract.conftest import (
    ENDPOINTS,
    MITM_BASE,
    NOTIFY_URL,
    PayWorld,
    Sandbox,
    send_red_packet,
    tampering,
    v2_client,
    v3_client,
    v3_credentials,
)
from wechat.endpoints import WeChatEndpoints
from wechat.errors import VerificationError, WeChatError
from wechat.pay_v2 import MerchantV2Credentials, PayV2Client
from wechat.pay_v3 import PayV3Client
from wechat.sandbox.testing import route_to_wsgi
from wechat.verify import PlatformKey, PlatformKeys


def _via(sandbox: Sandbox, host: str, mutate: Callable[[Response], None]) -> WeChatEndpoints:
    """Endpoints whose Pay host is a tampering proxy in front of the sandbox."""
    base = f"https://{host}"
    route_to_wsgi(sandbox.mock, base, tampering(sandbox.app, mutate))
    return WeChatEndpoints(pay_base=base, timeout_seconds=5)


def _prepay(client: PayV3Client, pay: PayWorld, out_trade_no: str) -> str:
    return client.jsapi_prepay(
        appid=pay.appid,
        description="验签测试",
        out_trade_no=out_trade_no,
        notify_url=NOTIFY_URL,
        amount_total=1000,
        payer_openid=pay.openid,
    )


def test_flipped_byte_in_a_signed_answer_is_refused(pay: PayWorld) -> None:
    mitm = PayV3Client(
        v3_credentials(pay.merchant), pay.client.keys, WeChatEndpoints(pay_base=MITM_BASE, timeout_seconds=5)
    )
    with pytest.raises(VerificationError) as exc:
        _prepay(mitm, pay, "VERIFY000001")
    assert (exc.value.code, exc.value.ambiguous, exc.value.http_status) == ("SIGNATURE_INVALID", True, 200)
    # The order exists: the refusal is ambiguous, and the same key over an honest line recovers it.
    [row] = pay.sandbox.state("orders")
    assert _prepay(pay.client, pay, "VERIFY000001") == row["prepay_id"]
    with pytest.raises(VerificationError):
        mitm.query_order_by_out_trade_no("VERIFY000001")


@pytest.mark.parametrize(
    ("header", "value", "code"),
    [
        ("Wechatpay-Signature", None, "SIGNATURE_MISSING"),
        ("Wechatpay-Timestamp", "1700000000", "TIMESTAMP_SKEW"),
        ("Wechatpay-Serial", "PUB_KEY_ID_0000000000000000000000000000000000", "UNKNOWN_SERIAL"),
        ("Wechatpay-Signature", "WECHATPAY/SIGNTEST/abc", "SIGNATURE_PROBE"),
    ],
)
def test_tampered_signature_headers_are_refused(
    pay: PayWorld, header: str, value: str | None, code: str
) -> None:
    def mutate(resp: Response) -> None:
        if value is None:
            del resp.headers[header]
        else:
            resp.headers[header] = value

    client = v3_client(pay.merchant, pay.sign_mode, _via(pay.sandbox, "headers.example.test", mutate))
    _prepay(pay.client, pay, "VERIFY000002")
    with pytest.raises(VerificationError) as exc:
        client.query_order_by_out_trade_no("VERIFY000002")
    assert exc.value.code == code


def test_answer_signed_by_another_key_is_refused(pay: PayWorld) -> None:
    """Right serial, wrong key: what a forged answer naming the real serial looks like."""
    # Any RSA key that is not WeChat's: here the merchant's own key stands in for the forger's.
    forged = pay.client.transport.private_key.public_key()
    keys = PlatformKeys([PlatformKey(serial=pay.expected_serial, public_key=forged)])
    client = PayV3Client(v3_credentials(pay.merchant), keys, ENDPOINTS)
    with pytest.raises(VerificationError) as exc:
        _prepay(client, pay, "VERIFY000003")
    assert exc.value.code == "SIGNATURE_INVALID"


def test_public_key_merchant_without_the_public_key_configured(sandbox: Sandbox) -> None:
    """§3.3 rule 5: an unknown PUB_KEY_ID is a configuration error; nothing to download."""
    merchant = sandbox.merchant(sign_mode="public_key")
    keys = PlatformKeys()
    keys.add_certificate(merchant["platform_certificate_pem"])
    client = PayV3Client(v3_credentials(merchant), keys, ENDPOINTS)
    keys.set_refresh(client.download_certificates)
    with pytest.raises(VerificationError) as exc:
        client.close_order("ANYTHING01")  # 204, signed with the public key (error answers are unsigned)
    assert exc.value.code == "UNKNOWN_SERIAL"


def test_tampered_v2_reply_is_refused_and_same_billno_recovers(sandbox: Sandbox) -> None:
    merchant = sandbox.merchant(balance_fen=10_000)
    oa = sandbox.official(merchant["mchid"], safe_mode=False)
    openid = sandbox.user()["openids"][oa["appid"]]

    def mutate(resp: Response) -> None:
        # Claim a bigger amount than WeChat answered; the MD5 sign no longer matches.
        data = resp.get_data()
        resp.set_data(re.sub(rb"<total_amount><!\[CDATA\[(\d+)", rb"<total_amount><![CDATA[9\1", data))

    endpoints = _via(sandbox, "v2mitm.example.test", mutate)
    creds: dict[str, Any] = {
        "mch_id": merchant["mchid"],
        "api_key": merchant["v2_key"],
        "cert_pem": merchant["merchant_certificate_pem"],
        "key_pem": merchant["merchant_private_key_pem"],
    }
    mitm = PayV2Client(MerchantV2Credentials(**creds), endpoints)
    with mitm, pytest.raises(VerificationError) as exc:
        send_red_packet(mitm, oa["appid"], openid, "RPVERIFY0001", amount=300)
    assert exc.value.ambiguous
    with v2_client(merchant) as honest:
        result = send_red_packet(honest, oa["appid"], openid, "RPVERIFY0001", amount=300)
    assert result["total_amount"] == "300"
    assert [(p["key"], p["amount_fen"]) for p in sandbox.payouts(merchant["mchid"])] == [
        ("RPVERIFY0001", 300)
    ]


def test_tampered_bill_file_fails_the_hash(pay: PayWorld) -> None:
    _prepay(pay.client, pay, "VERIFY000004")
    pay.sandbox.post("/transactions/VERIFY000004/pay")
    pay.sandbox.advance(86400)

    def mutate(resp: Response) -> None:
        if resp.headers.get("Content-Type") == "application/octet-stream":
            resp.set_data(resp.get_data().replace(b"10.00", b"99.00"))

    client = v3_client(pay.merchant, pay.sign_mode, _via(pay.sandbox, "bills.example.test", mutate))
    bill = client.trade_bill(dt.date(2026, 11, 24), tar_type=None)
    with pytest.raises(VerificationError) as exc:
        client.download_bill(bill, gzipped=False)
    assert exc.value.code == "HASH_MISMATCH"
    # A download URL on another host never receives our Authorization header.
    with pytest.raises(WeChatError) as exc2:
        pay.client.download_bill(bill, gzipped=False)
    assert exc2.value.code == "BAD_DOWNLOAD_URL"
