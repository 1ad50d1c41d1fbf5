"""PayV3Client against ``responses`` callbacks that check our signatures and sign their answers."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import responses
import wechat_vectors as v
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP, PKCS1v15
from responses import matchers
from wechat_fakes import APIV3_KEY, PAY_BASE, PLATFORM_SERIAL, rsa_key, self_signed_cert, wechat_headers

from wechat.crypto import aead_decrypt, aead_encrypt, parse_authorization
from wechat.endpoints import WeChatEndpoints
from wechat.errors import VerificationError, WeChatError
from wechat.gateway_log import GatewayEvent
from wechat.pay_v3 import MerchantV3Credentials, PayV3Client
from wechat.verify import PlatformKeys, certificate_key

Handler = Callable[[requests.PreparedRequest], tuple[int, dict[str, str], bytes]]
Reply = tuple[int, dict[str, str], bytes]


def check_merchant_signature(request: requests.PreparedRequest, mchid: str = "1900007291") -> dict[str, str]:
    """What WeChat does first: rebuild the 5-line message from the raw request and verify it."""
    auth = parse_authorization(request.headers["Authorization"])
    assert auth["mchid"] == mchid
    assert auth["serial_no"] == "MERCHANTSERIAL01"
    assert abs(int(auth["timestamp"]) - time.time()) < 60
    body = request.body or b""
    assert isinstance(body, bytes)
    parts = urlsplit(request.url or "")
    canonical = parts.path + (f"?{parts.query}" if parts.query else "")
    message = (
        f"{request.method}\n{canonical}\n{auth['timestamp']}\n{auth['nonce_str']}\n".encode() + body + b"\n"
    )
    rsa_key("merchant").public_key().verify(
        base64.b64decode(auth["signature"]), message, PKCS1v15(), hashes.SHA256()
    )
    return auth


def signed(status: int, payload: Any = None, *, raw: bytes | None = None) -> Reply:
    body = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
    headers = wechat_headers(rsa_key("platform"), PLATFORM_SERIAL, body, timestamp=int(time.time()))
    headers["Content-Type"] = "application/json"
    return status, headers, body


def wechat(
    status: int, payload: Any = None, *, seen: list[requests.PreparedRequest] | None = None
) -> Handler:
    def handler(request: requests.PreparedRequest) -> Reply:
        check_merchant_signature(request)
        if seen is not None:
            seen.append(request)
        return signed(status, payload)

    return handler


def test_jsapi_prepay_signs_exact_body_and_returns_prepay_id(
    mocked: responses.RequestsMock, pay: PayV3Client
) -> None:
    seen: list[requests.PreparedRequest] = []
    mocked.add_callback(
        "POST",
        f"{PAY_BASE}/v3/pay/transactions/jsapi",
        callback=wechat(200, {"prepay_id": "wx123"}, seen=seen),
    )
    events: list[GatewayEvent] = []
    pay.hook = pay.transport.hook = events.append
    prepay_id = pay.jsapi_prepay(
        appid="wxd678efh567hg6787",
        description="Image形象店-深圳腾大-QQ公仔",
        out_trade_no="1217752501201407033233368018",
        notify_url="https://www.weixin.qq.com/wxpay/pay.php",
        amount_total=100,
        payer_openid="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
    )
    assert prepay_id == "wx123"
    (request,) = seen
    assert (
        request.body
        == (
            '{"appid":"wxd678efh567hg6787","mchid":"1900007291","description":"Image形象店-深圳腾大-QQ公仔",'
            '"out_trade_no":"1217752501201407033233368018","notify_url":"https://www.weixin.qq.com/wxpay/pay.php",'
            '"amount":{"total":100,"currency":"CNY"},"payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}}'
        ).encode()
    )
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert "Wechatpay-Serial" not in request.headers
    (event,) = events
    assert (event.direction, event.api, event.idempotency_key, event.http_status, event.verified) == (
        "outbound",
        "pay.jsapi_prepay",
        "1217752501201407033233368018",
        200,
        True,
    )
    assert "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o" not in event.body and "oUpF***eS6o" in event.body


@pytest.mark.parametrize("amount", [0, -1, 1.5, True])
def test_amounts_must_be_positive_integer_fen(pay: PayV3Client, amount: Any) -> None:
    with pytest.raises(ValueError):
        pay.jsapi_prepay(
            appid="a",
            description="d",
            out_trade_no="o1",
            notify_url="https://n",
            amount_total=amount,
            payer_openid="p",
        )


def test_request_payment_params_verify_with_merchant_key(pay: PayV3Client) -> None:
    params = pay.request_payment_params("wxd678efh567hg6787", "wx201410272009395522657a690389285100")
    assert params["package"] == "prepay_id=wx201410272009395522657a690389285100"
    assert params["signType"] == "RSA"
    assert params["timeStamp"].isdigit() and len(params["nonceStr"]) == 32
    message = (
        f"wxd678efh567hg6787\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n".encode()
    )
    rsa_key("merchant").public_key().verify(
        base64.b64decode(params["paySign"]), message, PKCS1v15(), hashes.SHA256()
    )


def test_query_signs_path_with_query_and_escapes_path_parameters(
    mocked: responses.RequestsMock, pay: PayV3Client
) -> None:
    seen: list[requests.PreparedRequest] = []
    mocked.add_callback(
        "GET",
        f"{PAY_BASE}/v3/pay/transactions/out-trade-no/a%2Fb%3Fc",
        callback=wechat(200, {"trade_state": "NOTPAY"}, seen=seen),
        match=[matchers.query_param_matcher({"mchid": "1900007291"})],
    )
    assert pay.query_order_by_out_trade_no("a/b?c") == {"trade_state": "NOTPAY"}
    assert seen[0].path_url == "/v3/pay/transactions/out-trade-no/a%2Fb%3Fc?mchid=1900007291"
    assert seen[0].body is None


def test_query_by_transaction_id(mocked: responses.RequestsMock, pay: PayV3Client) -> None:
    mocked.add_callback(
        "GET",
        f"{PAY_BASE}/v3/pay/transactions/id/4200000001",
        callback=wechat(200, {"trade_state": "SUCCESS"}),
    )
    assert pay.query_order_by_transaction_id("4200000001")["trade_state"] == "SUCCESS"


def test_close_accepts_signed_204(mocked: responses.RequestsMock, pay: PayV3Client) -> None:
    seen: list[requests.PreparedRequest] = []
    mocked.add_callback(
        "POST", f"{PAY_BASE}/v3/pay/transactions/out-trade-no/T1/close", callback=wechat(204, seen=seen)
    )
    pay.close_order("T1")
    assert seen[0].body == b'{"mchid":"1900007291"}'


def test_refund_create_and_query(mocked: responses.RequestsMock, pay: PayV3Client) -> None:
    seen: list[requests.PreparedRequest] = []
    mocked.add_callback(
        "POST",
        f"{PAY_BASE}/v3/refund/domestic/refunds",
        callback=wechat(200, {"status": "PROCESSING", "out_refund_no": "R1"}, seen=seen),
    )
    mocked.add_callback(
        "GET", f"{PAY_BASE}/v3/refund/domestic/refunds/R1", callback=wechat(200, {"status": "SUCCESS"})
    )
    assert (
        pay.create_refund(out_refund_no="R1", out_trade_no="T1", refund=50, total=100)["status"]
        == "PROCESSING"
    )
    assert seen[0].body == (
        b'{"out_trade_no":"T1","out_refund_no":"R1","amount":{"refund":50,"total":100,"currency":"CNY"}}'
    )
    assert pay.query_refund("R1") == {"status": "SUCCESS"}
    with pytest.raises(ValueError):
        pay.create_refund(out_refund_no="R2", out_trade_no="T1", refund=101, total=100)
    with pytest.raises(ValueError):
        pay.create_refund(out_refund_no="R2", refund=1, total=100)


def test_transfer_bill_encrypts_user_name_and_names_the_key(
    mocked: responses.RequestsMock, pay: PayV3Client
) -> None:
    seen: list[requests.PreparedRequest] = []
    reply = {"out_bill_no": "B1", "state": "WAIT_USER_CONFIRM", "package_info": "pkg"}
    mocked.add_callback(
        "POST", f"{PAY_BASE}/v3/fund-app/mch-transfer/transfer-bills", callback=wechat(200, reply, seen=seen)
    )
    result = pay.create_transfer_bill(
        appid="wxapp",
        out_bill_no="B1",
        transfer_scene_id="1000",
        openid="o-user",
        transfer_amount=300000,
        transfer_remark="返利",
        transfer_scene_report_infos=[{"info_type": "活动名称", "info_content": "双向返利"}],
        user_name="张三",
    )
    assert result["package_info"] == "pkg"
    request = seen[0]
    assert request.headers["Wechatpay-Serial"] == PLATFORM_SERIAL
    sent = json.loads(request.body or b"")
    oaep = OAEP(mgf=MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303
    assert rsa_key("platform").decrypt(base64.b64decode(sent["user_name"]), oaep).decode() == "张三"
    assert sent["transfer_amount"] == 300000


def test_transfer_bill_query_and_cancel(mocked: responses.RequestsMock, pay: PayV3Client) -> None:
    seen: list[requests.PreparedRequest] = []
    base = f"{PAY_BASE}/v3/fund-app/mch-transfer/transfer-bills"
    mocked.add_callback("GET", f"{base}/out-bill-no/B1", callback=wechat(200, {"state": "SUCCESS"}))
    mocked.add_callback("GET", f"{base}/transfer-bill-no/W1", callback=wechat(200, {"state": "FAIL"}))
    mocked.add_callback(
        "POST", f"{base}/out-bill-no/B1/cancel", callback=wechat(200, {"state": "CANCELING"}, seen=seen)
    )
    assert pay.query_transfer_bill("B1")["state"] == "SUCCESS"
    assert pay.query_transfer_bill_by_id("W1")["state"] == "FAIL"
    assert pay.cancel_transfer_bill("B1")["state"] == "CANCELING"
    assert seen[0].body is None


def test_favor_send_and_query(mocked: responses.RequestsMock, pay: PayV3Client) -> None:
    seen: list[requests.PreparedRequest] = []
    mocked.add_callback(
        "POST",
        f"{PAY_BASE}/v3/marketing/favor/users/o-user/coupons",
        callback=wechat(200, {"coupon_id": "9867041"}, seen=seen),
    )
    mocked.add_callback(
        "GET",
        f"{PAY_BASE}/v3/marketing/favor/users/o-user/coupons/9867041",
        callback=wechat(200, {"status": "SENDED"}),
        match=[matchers.query_param_matcher({"appid": "wxapp"})],
    )
    mocked.add_callback(
        "POST", f"{PAY_BASE}/v3/marketing/favor/coupon-stocks", callback=wechat(200, {"stock_id": "9856000"})
    )
    mocked.add_callback(
        "POST",
        f"{PAY_BASE}/v3/marketing/favor/stocks/9856000/start",
        callback=wechat(200, {"stock_id": "9856000"}),
    )
    assert pay.create_favor_stock(out_request_no="S1", stock={"stock_name": "x"})["stock_id"] == "9856000"
    assert pay.start_favor_stock("9856000")["stock_id"] == "9856000"
    coupon = pay.send_favor_coupon(stock_id="9856000", openid="o-user", out_request_no="Q1", appid="wxapp")
    assert coupon == "9867041"
    assert json.loads(seen[0].body or b"") == {
        "stock_id": "9856000",
        "out_request_no": "Q1",
        "appid": "wxapp",
        "stock_creator_mchid": "1900007291",
    }
    assert pay.query_favor_coupon(coupon_id="9867041", openid="o-user", appid="wxapp")["status"] == "SENDED"


# --- Error classification ---------------------------------------------------------------------------


def _prepay(pay: PayV3Client) -> str:
    return pay.jsapi_prepay(
        appid="wxapp",
        description="d",
        out_trade_no="T1",
        notify_url="https://n.test/x",
        amount_total=1,
        payer_openid="o",
    )


@pytest.mark.parametrize(
    ("status", "payload", "retryable", "ambiguous"),
    [
        (500, {"code": "SYSTEM_ERROR", "message": "系统错误"}, False, True),
        (403, {"code": "NOT_ENOUGH", "message": "余额不足"}, True, False),
        (429, {"code": "FREQUENCY_LIMITED", "message": "频率超限"}, True, False),
        (400, {"code": "PARAM_ERROR", "message": "参数错误"}, False, False),
        (403, {"code": "OUT_TRADE_NO_USED", "message": "重复"}, False, False),
        (400, {"code": "NEVER_SEEN", "message": "?"}, False, True),
    ],
)
def test_error_answers_are_classified(
    mocked: responses.RequestsMock,
    pay: PayV3Client,
    status: int,
    payload: dict[str, str],
    retryable: bool,
    ambiguous: bool,
) -> None:
    body = json.dumps(payload).encode()
    mocked.add("POST", f"{PAY_BASE}/v3/pay/transactions/jsapi", status=status, body=body)
    with pytest.raises(WeChatError) as excinfo:
        _prepay(pay)
    err = excinfo.value
    assert (err.code, err.http_status, err.raw_body) == (payload["code"], status, body)
    assert (err.retryable, err.ambiguous) == (retryable, ambiguous)


@pytest.mark.parametrize(
    ("exc", "code", "retryable", "ambiguous"),
    [
        (requests.ReadTimeout("read timed out"), "TIMEOUT", False, True),
        (requests.ConnectionError("reset by peer"), "CONNECTION_ERROR", False, True),
        (requests.ConnectTimeout("connect timed out"), "CONNECT_TIMEOUT", True, False),
    ],
)
def test_transport_failures(
    mocked: responses.RequestsMock,
    pay: PayV3Client,
    exc: Exception,
    code: str,
    retryable: bool,
    ambiguous: bool,
) -> None:
    mocked.add("POST", f"{PAY_BASE}/v3/pay/transactions/jsapi", body=exc)
    with pytest.raises(WeChatError) as excinfo:
        _prepay(pay)
    assert (excinfo.value.code, excinfo.value.retryable, excinfo.value.ambiguous) == (
        code,
        retryable,
        ambiguous,
    )


def test_signed_garbage_2xx_is_ambiguous(mocked: responses.RequestsMock, pay: PayV3Client) -> None:
    mocked.add_callback(
        "POST", f"{PAY_BASE}/v3/pay/transactions/jsapi", callback=lambda r: signed(200, raw=b"<html>")
    )
    with pytest.raises(WeChatError) as excinfo:
        _prepay(pay)
    assert (excinfo.value.code, excinfo.value.ambiguous) == ("UNPARSABLE", True)


def test_garbage_5xx_is_ambiguous(mocked: responses.RequestsMock, pay: PayV3Client) -> None:
    mocked.add("POST", f"{PAY_BASE}/v3/pay/transactions/jsapi", status=502, body=b"<html>bad gateway</html>")
    with pytest.raises(WeChatError) as excinfo:
        _prepay(pay)
    assert (excinfo.value.code, excinfo.value.ambiguous, excinfo.value.http_status) == ("HTTP_502", True, 502)


def test_unsigned_2xx_is_treated_as_forged(mocked: responses.RequestsMock, pay: PayV3Client) -> None:
    mocked.add("POST", f"{PAY_BASE}/v3/pay/transactions/jsapi", json={"prepay_id": "wx-forged"})
    with pytest.raises(VerificationError) as excinfo:
        _prepay(pay)
    assert excinfo.value.ambiguous and excinfo.value.code == "SIGNATURE_MISSING"


def test_2xx_signed_by_unknown_key_is_rejected(mocked: responses.RequestsMock, pay: PayV3Client) -> None:
    def forged(request: requests.PreparedRequest) -> Reply:
        body = b'{"prepay_id":"wx-forged"}'
        return (
            200,
            wechat_headers(rsa_key("attacker"), PLATFORM_SERIAL, body, timestamp=int(time.time())),
            body,
        )

    mocked.add_callback("POST", f"{PAY_BASE}/v3/pay/transactions/jsapi", callback=forged)
    with pytest.raises(VerificationError) as excinfo:
        _prepay(pay)
    assert excinfo.value.code == "SIGNATURE_INVALID"


def test_public_key_mode_sends_wechatpay_serial(
    mocked: responses.RequestsMock, merchant: MerchantV3Credentials, endpoints: WeChatEndpoints
) -> None:
    from wechat_fakes import public_pem

    pub_id = "PUB_KEY_ID_0000000000000024101100397200000006"
    keys = PlatformKeys()
    keys.add_public_key(pub_id, public_pem(rsa_key("pubkey")))
    client = PayV3Client(merchant, keys, endpoints)
    seen: list[requests.PreparedRequest] = []

    def handler(request: requests.PreparedRequest) -> Reply:
        check_merchant_signature(request)
        seen.append(request)
        body = b'{"trade_state":"SUCCESS"}'
        return 200, wechat_headers(rsa_key("pubkey"), pub_id, body, timestamp=int(time.time())), body

    mocked.add_callback("GET", f"{PAY_BASE}/v3/pay/transactions/out-trade-no/T1", callback=handler)
    assert client.query_order_by_out_trade_no("T1")["trade_state"] == "SUCCESS"
    assert seen[0].headers["Wechatpay-Serial"] == pub_id


# --- Notifications ----------------------------------------------------------------------------------


def _vector_15_client(endpoints: WeChatEndpoints, merchant: MerchantV3Credentials, now: float) -> PayV3Client:
    keys = PlatformKeys(clock=lambda: now)
    keys.add_certificate(v.GO_PLATFORM_CERT)
    return PayV3Client(merchant, keys, endpoints)


VECTOR_15_HEADERS = {
    "Wechatpay-Serial": "D7CE59D1F522D701",
    "Wechatpay-Timestamp": "1700000000",
    "Wechatpay-Nonce": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
    "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    "Wechatpay-Signature": v.DERIVED_NOTIFY_SIGNATURE_15,
}


def test_parse_notification_vector_15(endpoints: WeChatEndpoints, merchant: MerchantV3Credentials) -> None:
    client = _vector_15_client(endpoints, merchant, 1700000000 + 10)
    events: list[GatewayEvent] = []
    client.hook = events.append
    note = client.parse_notification(VECTOR_15_HEADERS, v.DERIVED_NOTIFY_BODY_15)
    assert (note.id, note.event_type, note.resource_type, note.summary, note.original_type) == (
        "EV-2018022511223320873",
        "TRANSACTION.SUCCESS",
        "encrypt-resource",
        "支付成功",
        "transaction",
    )
    assert note.resource == json.loads(v.DERIVED_NOTIFY_PLAIN_15)
    assert note.resource["amount"]["total"] == 100
    assert events[0].direction == "inbound" and events[0].verified is True
    assert events[0].idempotency_key == "1217752501201407033233368018"


def test_parse_notification_rejects_stale_probe_and_tampered(
    endpoints: WeChatEndpoints, merchant: MerchantV3Credentials
) -> None:
    stale = _vector_15_client(endpoints, merchant, 1700000000 + 301)
    with pytest.raises(VerificationError) as excinfo:
        stale.parse_notification(VECTOR_15_HEADERS, v.DERIVED_NOTIFY_BODY_15)
    assert excinfo.value.code == "TIMESTAMP_SKEW" and not excinfo.value.ambiguous
    fresh = _vector_15_client(endpoints, merchant, 1700000000)
    probe = VECTOR_15_HEADERS | {"Wechatpay-Signature": "WECHATPAY/SIGNTEST/" + v.DERIVED_NOTIFY_SIGNATURE_15}
    with pytest.raises(VerificationError) as excinfo:
        fresh.parse_notification(probe, v.DERIVED_NOTIFY_BODY_15)
    assert excinfo.value.code == "SIGNATURE_PROBE"
    with pytest.raises(VerificationError):
        fresh.parse_notification(VECTOR_15_HEADERS, v.DERIVED_NOTIFY_BODY_15.replace(b"Y/YE", b"Y/YF"))


def test_notification_with_wrong_apiv3_key_fails_decryption(
    endpoints: WeChatEndpoints, merchant: MerchantV3Credentials
) -> None:
    other = MerchantV3Credentials(
        mchid=merchant.mchid,
        serial_no=merchant.serial_no,
        private_key_pem=merchant.private_key_pem,
        apiv3_key="x" * 32,
    )
    client = _vector_15_client(endpoints, other, 1700000000)
    with pytest.raises(VerificationError) as excinfo:
        client.parse_notification(VECTOR_15_HEADERS, v.DERIVED_NOTIFY_BODY_15)
    assert excinfo.value.code == "DECRYPT_FAILED"


def test_notification_round_trip_with_test_keys(pay: PayV3Client) -> None:
    resource = {"out_refund_no": "R1", "refund_status": "SUCCESS", "amount": {"refund": 50, "total": 100}}
    envelope = {
        "id": "EV-1",
        "create_time": "2026-01-01T00:00:00+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "REFUND.SUCCESS",
        "summary": "退款成功",
        "resource": {
            "original_type": "refund",
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": aead_encrypt(APIV3_KEY, "abcdefghijkl", json.dumps(resource).encode(), "refund"),
            "associated_data": "refund",
            "nonce": "abcdefghijkl",
        },
    }
    body = json.dumps(envelope, ensure_ascii=False).encode()
    headers = wechat_headers(rsa_key("platform"), PLATFORM_SERIAL, body, timestamp=int(time.time()))
    note = pay.parse_notification(headers, body)
    assert note.event_type == "REFUND.SUCCESS" and note.resource == resource


# --- Certificates and bills -------------------------------------------------------------------------


def test_certificates_response_vector_14_decrypts() -> None:
    item = json.loads(v.CERTS_RESPONSE_14)["data"][0]
    enc = item["encrypt_certificate"]
    pem = aead_decrypt(APIV3_KEY, enc["nonce"], enc["ciphertext"], enc["associated_data"])
    assert len(pem) == 1475
    key = certificate_key(pem)
    assert key.serial == item["serial_no"] == "5DEA10EF55877E3CF6C33255C2E7DEFFF7E427EC"


def test_download_certificates_bootstraps_and_refreshes(
    mocked: responses.RequestsMock, merchant: MerchantV3Credentials, endpoints: WeChatEndpoints
) -> None:
    new_key = rsa_key("downloaded")
    pem = self_signed_cert(new_key, 0xABCDEF).encode()
    listing = {
        "data": [
            {
                "serial_no": "ABCDEF",
                "effective_time": "2020-01-01T00:00:00+08:00",
                "expire_time": "2040-01-01T00:00:00+08:00",
                "encrypt_certificate": {
                    "algorithm": "AEAD_AES_256_GCM",
                    "associated_data": "certificate",
                    "nonce": "14b16c03dc1b",
                    "ciphertext": aead_encrypt(APIV3_KEY, "14b16c03dc1b", pem, "certificate"),
                },
            }
        ]
    }
    calls: list[int] = []

    def handler(request: requests.PreparedRequest) -> Reply:
        check_merchant_signature(request)
        calls.append(1)
        body = json.dumps(listing).encode()
        return 200, wechat_headers(new_key, "ABCDEF", body, timestamp=int(time.time())), body

    mocked.add_callback("GET", f"{PAY_BASE}/v3/certificates", callback=handler)
    keys = PlatformKeys(refresh_interval=3600)
    client = PayV3Client(merchant, keys, endpoints)
    keys.set_refresh(client.download_certificates)
    # First response signed by a serial we do not know yet: one download, then verified.
    body = b'{"x":1}'
    assert keys.verify(wechat_headers(new_key, "ABCDEF", body, timestamp=int(time.time())), body) == "ABCDEF"
    assert keys.serials() == ["ABCDEF"] and calls == [1]


def test_download_certificates_rejects_listing_signed_by_stranger(
    mocked: responses.RequestsMock, pay: PayV3Client
) -> None:
    listing = {"data": []}

    def handler(request: requests.PreparedRequest) -> Reply:
        body = json.dumps(listing).encode()
        return 200, wechat_headers(rsa_key("attacker"), "EEEE", body, timestamp=int(time.time())), body

    mocked.add_callback("GET", f"{PAY_BASE}/v3/certificates", callback=handler)
    with pytest.raises(VerificationError):
        pay.download_certificates()


def test_trade_bill_and_download_checks_sha1(mocked: responses.RequestsMock, pay: PayV3Client) -> None:
    content = "交易时间,公众账号ID\n`2026-01-01 00:00:00,`wxapp\n".encode()
    url = f"{PAY_BASE}/v3/billdownload/file?token=abc"
    bill = {"hash_type": "SHA1", "hash_value": hashlib.sha1(content).hexdigest(), "download_url": url}  # noqa: S324
    mocked.add_callback(
        "GET",
        f"{PAY_BASE}/v3/bill/tradebill",
        callback=wechat(200, bill),
        match=[
            matchers.query_param_matcher({"bill_date": "2026-01-01", "bill_type": "ALL", "tar_type": "GZIP"})
        ],
    )
    seen: list[requests.PreparedRequest] = []

    def file_handler(request: requests.PreparedRequest) -> Reply:
        check_merchant_signature(request)
        seen.append(request)
        return 200, {"Content-Type": "application/octet-stream"}, gzip.compress(content)

    mocked.add_callback("GET", url, callback=file_handler)
    got = pay.trade_bill(dt.date(2026, 1, 1))
    assert pay.download_bill(got) == content
    assert seen[0].path_url == "/v3/billdownload/file?token=abc"
    with pytest.raises(VerificationError):
        pay.download_bill(dict(got, hash_value="0" * 40))
    with pytest.raises(WeChatError) as excinfo:
        pay.download_bill(dict(got, download_url="https://evil.test/v3/billdownload/file?token=abc"))
    assert excinfo.value.code == "BAD_DOWNLOAD_URL"


def test_credentials_hide_secrets_and_check_key_length(merchant: MerchantV3Credentials) -> None:
    assert APIV3_KEY not in repr(merchant) and "PRIVATE" not in repr(merchant)
    with pytest.raises(ValueError):
        MerchantV3Credentials(
            mchid="1", serial_no="2", private_key_pem=merchant.private_key_pem, apiv3_key="short"
        )
