"""PayV2Client red packets / transfers against ``responses``; v2 notifications and replies."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses
import wechat_vectors as v
from wechat_fakes import PAY_BASE

from wechat.crypto import v2_sign
from wechat.endpoints import WeChatEndpoints
from wechat.errors import VerificationError, WeChatError, WeChatXMLError, XMLSecurityError
from wechat.gateway_log import GatewayEvent
from wechat.pay_v2 import (
    MerchantV2Credentials,
    PayV2Client,
    decrypt_refund_req_info,
    parse_v2_notification,
    v2_reply,
)
from wechat.xml import parse_xml, to_xml

API_KEY = "192006250b4c09247ec02edce69f6a2d"
SEND = f"{PAY_BASE}/mmpaymkttransfers/sendredpack"


@pytest.fixture
def v2(endpoints: WeChatEndpoints) -> Iterator[PayV2Client]:
    merchant = MerchantV2Credentials(
        mch_id="10000100", api_key=API_KEY, cert_pem="-----CERT-----\n", key_pem="-----KEY-----\n"
    )
    with PayV2Client(merchant, endpoints, nonce=lambda: "ibuaiVcKdpRxkhJA") as client:
        yield client


def xml_reply(fields: dict[str, Any], *, sign: bool = True) -> str:
    params = dict(fields)
    if sign:
        params["sign"] = v2_sign(params, API_KEY)
    return to_xml(params)


def send(v2: PayV2Client, billno: str = "10000100202601010000000001") -> dict[str, Any]:
    return v2.send_red_packet(
        mch_billno=billno,
        wxappid="wxoa",
        re_openid="o-user-123456",
        total_amount=100,
        send_name="红利",
        wishing="恭喜",
        act_name="双向返利",
        remark="r",
        client_ip="10.0.0.1",
    )


def test_sendredpack_request_bytes_sign_and_mtls(mocked: responses.RequestsMock, v2: PayV2Client) -> None:
    seen: list[requests.PreparedRequest] = []
    cert_paths: list[tuple[str, str]] = []

    def handler(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        seen.append(request)
        return 200, {}, xml_reply({"return_code": "SUCCESS", "result_code": "SUCCESS", "send_listid": "100"})

    mocked.add_callback("POST", SEND, callback=handler)
    events: list[GatewayEvent] = []
    v2.hook = events.append
    result = send(v2)
    assert result["send_listid"] == "100"
    sent = parse_xml(seen[0].body or b"")
    assert sent["mch_billno"] == "10000100202601010000000001"
    assert sent["total_amount"] == "100" and sent["total_num"] == "1"
    assert sent["sign"] == v2_sign({k: val for k, val in sent.items() if k != "sign"}, API_KEY)
    assert (seen[0].body or b"").startswith(b"<xml><act_name><![CDATA[")
    cert, key = mocked.calls[0].request.req_kwargs["cert"]
    cert_paths.append((cert, key))
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    with open(cert, encoding="ascii") as handle:
        assert handle.read() == "-----CERT-----\n"
    assert events[0].idempotency_key == "10000100202601010000000001" and events[0].verified is True
    assert "ibuaiVcKdpRxkhJA" not in events[0].body and "o-us***3456" in events[0].body
    v2.close()
    assert not os.path.exists(os.path.dirname(cert))


def test_mch_billno_is_required(v2: PayV2Client) -> None:
    with pytest.raises(ValueError):
        send(v2, billno="")
    with pytest.raises(TypeError):
        v2.send_red_packet(wxappid="wxoa")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("err_code", "retryable", "ambiguous"),
    [
        ("SYSTEMERROR", False, True),
        ("NOTENOUGH", True, False),
        ("FREQ_LIMIT", True, False),
        ("SENDNUM_LIMIT", True, False),
        ("PARAM_ERROR", False, False),
        ("FATAL_ERROR", False, False),
        ("SEND_FAILED", False, False),
        ("SOMETHING_NEW", False, True),
    ],
)
def test_red_packet_errors_are_classified(
    mocked: responses.RequestsMock, v2: PayV2Client, err_code: str, retryable: bool, ambiguous: bool
) -> None:
    body = xml_reply(
        {"return_code": "SUCCESS", "result_code": "FAIL", "err_code": err_code, "err_code_des": "描述"}
    )
    mocked.add("POST", SEND, body=body)
    with pytest.raises(WeChatError) as excinfo:
        send(v2)
    err = excinfo.value
    assert (err.code, err.retryable, err.ambiguous, err.message) == (err_code, retryable, ambiguous, "描述")


def test_success_return_code_without_result_is_ambiguous(
    mocked: responses.RequestsMock, v2: PayV2Client
) -> None:
    # §5.2: "该用户今日领取金额超过限制" arrived as return_code=SUCCESS with no result pair.
    mocked.add("POST", SEND, body=xml_reply({"return_code": "SUCCESS", "return_msg": "超过限制"}, sign=False))
    with pytest.raises(WeChatError) as excinfo:
        send(v2)
    assert excinfo.value.ambiguous


@pytest.mark.parametrize("body", [b"<html>502</html", b"", b"\xff\xfe"])
def test_unparsable_answer_is_ambiguous(mocked: responses.RequestsMock, v2: PayV2Client, body: bytes) -> None:
    mocked.add("POST", SEND, body=body)
    with pytest.raises(WeChatXMLError) as excinfo:
        send(v2)
    assert excinfo.value.ambiguous


def test_xxe_answer_is_refused(mocked: responses.RequestsMock, v2: PayV2Client) -> None:
    mocked.add(
        "POST",
        SEND,
        body=b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><a>&e;</a></xml>',
    )
    with pytest.raises(XMLSecurityError):
        send(v2)


def test_answer_with_bad_sign_is_a_verification_error(
    mocked: responses.RequestsMock, v2: PayV2Client
) -> None:
    body = to_xml({"return_code": "SUCCESS", "result_code": "SUCCESS", "sign": "0" * 32})
    mocked.add("POST", SEND, body=body)
    with pytest.raises(VerificationError) as excinfo:
        send(v2)
    assert excinfo.value.ambiguous


@pytest.mark.parametrize(
    ("exc", "retryable", "ambiguous"),
    [
        (requests.ReadTimeout(), False, True),
        (requests.ConnectionError(), False, True),
        (requests.ConnectTimeout(), True, False),
    ],
)
def test_transport_failures(
    mocked: responses.RequestsMock, v2: PayV2Client, exc: Exception, retryable: bool, ambiguous: bool
) -> None:
    mocked.add("POST", SEND, body=exc)
    with pytest.raises(WeChatError) as excinfo:
        send(v2)
    assert (excinfo.value.retryable, excinfo.value.ambiguous) == (retryable, ambiguous)


def test_group_packet_query_and_transfers(mocked: responses.RequestsMock, v2: PayV2Client) -> None:
    ok = xml_reply({"return_code": "SUCCESS", "result_code": "SUCCESS", "status": "SENT"})
    for path in ("sendgroupredpack", "gethbinfo", "promotion/transfers", "gettransferinfo"):
        mocked.add("POST", f"{PAY_BASE}/mmpaymkttransfers/{path}", body=ok)
    v2.send_group_red_packet(
        mch_billno="G1",
        wxappid="wxoa",
        re_openid="o",
        total_amount=300,
        total_num=3,
        send_name="s",
        wishing="w",
        act_name="a",
        remark="r",
    )
    assert v2.query_red_packet(mch_billno="G1", appid="wxoa")["status"] == "SENT"
    v2.transfer_to_wallet(
        partner_trade_no="P1", mch_appid="wxoa", openid="o", amount=100, desc="d", spbill_create_ip="10.0.0.1"
    )
    v2.query_transfer(partner_trade_no="P1", appid="wxoa")
    bodies = [parse_xml(call.request.body or b"") for call in mocked.calls]
    assert bodies[0]["amt_type"] == "ALL_RAND" and bodies[0]["total_num"] == "3"
    assert bodies[1]["appid"] == "wxoa" and bodies[1]["bill_type"] == "MCHT"
    assert bodies[2]["mchid"] == "10000100" and "mch_id" not in bodies[2]
    assert bodies[2]["check_name"] == "NO_CHECK"
    with pytest.raises(ValueError):
        v2.send_group_red_packet(
            mch_billno="G2",
            wxappid="wxoa",
            re_openid="o",
            total_amount=300,
            total_num=2,
            send_name="s",
            wishing="w",
            act_name="a",
            remark="r",
        )
    v2.close()


# --- notifications ----------------------------------------------------------------------------------


def test_v2_notification_md5_and_hmac() -> None:
    fields = {"return_code": "SUCCESS", "result_code": "SUCCESS", "out_trade_no": "T1", "total_fee": "100"}
    md5 = dict(fields, sign=v2_sign(fields, API_KEY))
    note = parse_v2_notification(to_xml(md5).encode(), API_KEY)
    assert note.succeeded and note.fields["total_fee"] == "100"
    hmac_fields = dict(fields, sign_type="HMAC-SHA256")
    signed = dict(hmac_fields, sign=v2_sign(hmac_fields, API_KEY, "HMAC-SHA256"))
    assert parse_v2_notification(to_xml(signed).encode(), API_KEY).succeeded
    with pytest.raises(VerificationError):
        parse_v2_notification(to_xml(dict(md5, total_fee="1")).encode(), API_KEY)
    with pytest.raises(VerificationError):
        parse_v2_notification(to_xml({"return_code": "FAIL", "return_msg": "x"}).encode(), API_KEY)


def test_v2_reply_bytes() -> None:
    assert v2_reply(True) == (
        b"<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"
    )
    assert b"<![CDATA[FAIL]]>" in v2_reply(False, "bad sign")


def test_refund_req_info_vector_8() -> None:
    data = decrypt_refund_req_info(v.REQ_INFO_8, "OF4Ne3znh8KqL0V4NqmALQa0uXMYKcEk")
    assert data["out_refund_no"] == "1234"
    assert data["refund_recv_accout"] == "招商银行信用卡8915"
    assert data["settlement_refund_fee"] == "1"
    with pytest.raises(VerificationError):
        decrypt_refund_req_info(v.REQ_INFO_8, "wrong-key")
