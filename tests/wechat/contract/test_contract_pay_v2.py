"""PayV2Client (XML, mTLS identity from the sandbox) vs the sandbox: red packets, transfers (§5, §6.3)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.wechat.contract.conftest import Sandbox, v2_client
from tests.wechat.contract.conftest import send_red_packet as send
from wechat.crypto import load_private_key
from wechat.errors import WeChatError
from wechat.pay_v2 import PayV2Client
from wechat.sandbox.tls import client_certificate_cn


@pytest.fixture
def v2(sandbox: Sandbox) -> Iterator[tuple[Sandbox, dict[str, Any], dict[str, Any], str, PayV2Client]]:
    merchant = sandbox.merchant(balance_fen=50_000)
    oa = sandbox.official(merchant["mchid"], safe_mode=False)
    openid = sandbox.user()["openids"][oa["appid"]]
    with v2_client(merchant) as client:
        yield sandbox, merchant, oa, openid, client


def test_send_red_packet_replay_and_query(v2: Any) -> None:
    sandbox, merchant, oa, openid, client = v2
    billno = merchant["mchid"] + "202611240000000001"
    first = send(client, oa["appid"], openid, billno)
    assert (first["mch_billno"], first["re_openid"], first["total_amount"]) == (billno, openid, "500")
    again = send(client, oa["appid"], openid, billno)
    assert again["send_listid"] == first["send_listid"]
    [payout] = sandbox.payouts(merchant["mchid"])
    assert (payout["rail"], payout["key"], payout["amount_fen"], payout["paid"]) == (
        "redpack",
        billno,
        500,
        True,
    )
    assert sandbox.balance(merchant["mchid"]) == 50_000 - 500

    with pytest.raises(WeChatError) as exc:  # same number, other amount
        send(client, oa["appid"], openid, billno, amount=600)
    assert (exc.value.code, exc.value.final) == ("FATAL_ERROR", True)

    info = client.query_red_packet(mch_billno=billno, appid=oa["appid"])
    assert (info["status"], info["hb_type"], info["total_amount"]) == ("SENT", "NORMAL", "500")
    assert info["detail_id"] == first["send_listid"]
    sandbox.post(f"/redpacks/{billno}/open")
    opened = client.query_red_packet(mch_billno=billno, appid=oa["appid"])
    assert opened["status"] == "RECEIVED"
    assert opened["hblist"]["hbinfo"]["openid"] == openid
    assert opened["hblist"]["hbinfo"]["amount"] == "500"
    assert sandbox.get("/payouts", mchid=merchant["mchid"])["received_fen_by_openid"] == {openid: 500}

    with pytest.raises(WeChatError) as exc:
        client.query_red_packet(mch_billno="NEVERSENT", appid=oa["appid"])
    # gethbinfo NOT_FOUND may mean "still landing" (§5.5): never read it as "not sent".
    assert (exc.value.code, exc.value.ambiguous) == ("NOT_FOUND", True)


def test_red_packet_business_refusals_are_classified(v2: Any) -> None:
    sandbox, merchant, oa, openid, client = v2
    with pytest.raises(WeChatError) as exc:
        send(client, oa["appid"], openid, "RPMONEY0001", amount=50)  # below 1 yuan, no scene_id
    assert (exc.value.code, exc.value.final) == ("MONEY_LIMIT", True)
    with pytest.raises(WeChatError) as exc:
        send(client, oa["appid"], "o-not-a-follower", "RPOPENID001")
    assert (exc.value.code, exc.value.final) == ("OPENID_ERROR", True)
    mp = sandbox.mini_program(merchant["mchid"])
    with pytest.raises(WeChatError) as exc:  # red packets need an official account (§5.1)
        send(client, mp["appid"], openid, "RPAPPID0001")
    assert (exc.value.code, exc.value.final) == ("ILLEGAL_APPID", True)
    assert sandbox.payouts(merchant["mchid"]) == []


def test_not_enough_is_retryable_and_same_billno_pays_once_after_topup(v2: Any) -> None:
    sandbox, merchant, oa, openid, client = v2
    send(client, oa["appid"], openid, "RPBIG000001", amount=20_000)
    send(client, oa["appid"], openid, "RPBIG000002", amount=20_000)
    with pytest.raises(WeChatError) as exc:
        send(client, oa["appid"], openid, "RPBIG000003", amount=20_000)
    assert (exc.value.code, exc.value.retryable) == ("NOTENOUGH", True)
    sandbox.post(f"/merchants/{merchant['mchid']}/topup", {"amount_fen": 20_000})
    send(client, oa["appid"], openid, "RPBIG000003", amount=20_000)
    keys = sorted(p["key"] for p in sandbox.payouts(merchant["mchid"]) if p["paid"])
    assert keys == ["RPBIG000001", "RPBIG000002", "RPBIG000003"]
    assert sandbox.balance(merchant["mchid"]) == 50_000 + 20_000 - 60_000


def test_send_group_red_packet(v2: Any) -> None:
    sandbox, _merchant, oa, openid, client = v2
    result = client.send_group_red_packet(
        mch_billno="GROUP000001",
        wxappid=oa["appid"],
        re_openid=openid,
        total_amount=900,
        total_num=3,
        send_name="洪利小店",
        wishing="分享好运",
        act_name="裂变红包",
        remark="邀请好友",
    )
    assert result["mch_billno"] == "GROUP000001"
    row = sandbox.row("redpacks", mch_billno="GROUP000001")
    assert (row["hb_type"], row["total_num"], row["total_amount"], sum(row["shares"])) == (
        "GROUP",
        3,
        900,
        900,
    )
    info = client.query_red_packet(mch_billno="GROUP000001", appid=oa["appid"])
    assert (info["hb_type"], info["total_num"]) == ("GROUP", "3")
    with pytest.raises(ValueError, match="total_num"):
        client.send_group_red_packet(
            mch_billno="GROUP000002",
            wxappid=oa["appid"],
            re_openid=openid,
            total_amount=900,
            total_num=2,
            send_name="洪利小店",
            wishing="分享好运",
            act_name="裂变红包",
            remark="邀请好友",
        )


def test_transfer_to_wallet_and_query(v2: Any) -> None:
    sandbox, merchant, oa, openid, client = v2

    def transfer(amount: int) -> dict[str, Any]:
        return client.transfer_to_wallet(
            partner_trade_no="PTN000000001",
            mch_appid=oa["appid"],
            openid=openid,
            amount=amount,
            desc="返利",
            spbill_create_ip="10.0.0.1",
        )

    first = transfer(300)
    assert first["partner_trade_no"] == "PTN000000001"
    assert transfer(300)["payment_no"] == first["payment_no"]
    with pytest.raises(WeChatError) as exc:
        transfer(400)
    assert (exc.value.code, exc.value.final) == ("FATAL_ERROR", True)
    info = client.query_transfer(partner_trade_no="PTN000000001", appid=oa["appid"])
    assert (info["status"], info["payment_amount"], info["openid"]) == ("SUCCESS", "300", openid)
    [payout] = sandbox.payouts(merchant["mchid"])
    assert (payout["rail"], payout["amount_fen"], payout["paid"]) == ("v2_transfer", 300, True)
    with pytest.raises(WeChatError) as exc:
        client.transfer_to_wallet(
            partner_trade_no="PTN000000002",
            mch_appid=oa["appid"],
            openid=openid,
            amount=29,
            desc="返利",
            spbill_create_ip="10.0.0.1",
        )
    assert (exc.value.code, exc.value.final) == ("AMOUNT_LIMIT", True)


def test_wrong_v2_key_is_refused_by_wechat(v2: Any) -> None:
    sandbox, merchant, oa, openid, _client = v2
    with v2_client(merchant, api_key="W" * 32) as wrong, pytest.raises(WeChatError) as exc:
        send(wrong, oa["appid"], openid, "RPWRONGKEY1")
    assert exc.value.code == "SIGN_ERROR"
    assert exc.value.final
    assert sandbox.payouts(merchant["mchid"]) == []
    assert sandbox.balance(merchant["mchid"]) == 50_000


def test_unopened_red_packet_is_refunded(v2: Any) -> None:
    sandbox, merchant, oa, openid, client = v2
    send(client, oa["appid"], openid, "RPIGNORED001", amount=800)
    sandbox.advance(24 * 3600 + 60)
    info = client.query_red_packet(mch_billno="RPIGNORED001", appid=oa["appid"])
    assert (info["status"], info["refund_amount"]) == ("REFUND", "800")
    [payout] = sandbox.payouts(merchant["mchid"])
    assert (payout["paid"], payout["refunded_fen"]) == (False, 800)
    assert sandbox.balance(merchant["mchid"]) == 50_000


def test_mtls_identity_from_registration_and_ca_error(v2: Any) -> None:
    """The registration answer carries apiclient_cert.pem (CN = mch_id) for our merchant key (§4.1).

    In-process there is no TLS layer; switching ``require_client_cert`` on models a server that saw no
    client certificate, which WeChat answers with CA_ERROR (final: fix the certificate, same number).
    """
    sandbox, merchant, oa, openid, client = v2
    cert = x509.load_pem_x509_certificate(merchant["merchant_certificate_pem"].encode())
    key = load_private_key(merchant["merchant_private_key_pem"])
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
    assert client_certificate_cn(merchant["merchant_certificate_pem"]) == merchant["mchid"]

    sandbox.world.config.require_client_cert = True
    with pytest.raises(WeChatError) as exc:
        send(client, oa["appid"], openid, "RPNOCERT0001")
    assert (exc.value.code, exc.value.final) == ("CA_ERROR", True)
    assert sandbox.payouts(merchant["mchid"]) == []
