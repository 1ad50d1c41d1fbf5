"""Sandbox fault modes (POST /_sandbox/faults) as our clients classify them (§3.4, §5.2, §6.1).

The money rule under test: after anything ambiguous, a retry with the SAME idempotency key pays once.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.wechat.contract.conftest import ENDPOINTS, INFOS, NOTIFY_URL, PayWorld, Sandbox, v2_client
from tests.wechat.contract.conftest import send_red_packet as send
from wechat.errors import WeChatError
from wechat.miniprogram import MiniProgramClient


def _prepay(pay: PayWorld, out_trade_no: str) -> str:
    return pay.client.jsapi_prepay(
        appid=pay.appid,
        description="故障测试",
        out_trade_no=out_trade_no,
        notify_url=NOTIFY_URL,
        amount_total=1000,
        payer_openid=pay.openid,
    )


def _orders(pay: PayWorld) -> list[str]:
    return [row["out_trade_no"] for row in pay.sandbox.state("orders")]


@pytest.mark.parametrize(
    ("code", "retryable", "ambiguous"),
    [
        ("SYSTEM_ERROR", False, True),
        ("BANK_ERROR", False, True),
        ("NOT_ENOUGH", True, False),
        ("FREQUENCY_LIMITED", True, False),
        ("PARAM_ERROR", False, False),
        ("SOME_NEW_CODE", False, True),  # unknown codes may have been applied (§3.4 golden rule)
    ],
)
def test_v3_jsapi_error_codes_are_classified(
    pay: PayWorld, code: str, retryable: bool, ambiguous: bool
) -> None:
    pay.sandbox.fault("v3.jsapi", "error", code=code)
    with pytest.raises(WeChatError) as exc:
        _prepay(pay, "FAULT000001")
    assert (exc.value.code, exc.value.retryable, exc.value.ambiguous) == (code, retryable, ambiguous)
    assert exc.value.final == (not retryable and not ambiguous)
    assert _orders(pay) == []  # mode "error": nothing happened
    assert _prepay(pay, "FAULT000001")  # same key afterwards: created normally
    assert _orders(pay) == ["FAULT000001"]


def test_v3_timeout_is_ambiguous_and_same_key_recovers_the_order(pay: PayWorld) -> None:
    pay.sandbox.fault("v3.jsapi", "timeout", after_commit=True)
    with pytest.raises(WeChatError) as exc:
        _prepay(pay, "FAULT000002")
    assert (exc.value.code, exc.value.ambiguous) == ("TIMEOUT", True)
    [row] = pay.sandbox.state("orders")  # the order was created although we saw no answer
    assert _prepay(pay, "FAULT000002") == row["prepay_id"]
    assert _orders(pay) == ["FAULT000002"]


def test_v3_malformed_is_ambiguous(pay: PayWorld) -> None:
    pay.sandbox.fault("v3.jsapi", "malformed", after_commit=True)
    with pytest.raises(WeChatError) as exc:
        _prepay(pay, "FAULT000003")
    assert (exc.value.code, exc.value.ambiguous, exc.value.http_status) == ("UNPARSABLE", True, 200)
    assert pay.client.query_order_by_out_trade_no("FAULT000003")["trade_state"] == "NOTPAY"


def test_v3_query_and_refund_faults(pay: PayWorld) -> None:
    _prepay(pay, "FAULT000004")
    pay.sandbox.post("/transactions/FAULT000004/pay")
    pay.sandbox.fault("v3.query", "error", code="SYSTEM_ERROR")
    with pytest.raises(WeChatError) as exc:
        pay.client.query_order_by_out_trade_no("FAULT000004")
    assert exc.value.ambiguous
    pay.sandbox.fault("v3.refund", "accept_then_error")
    with pytest.raises(WeChatError) as exc:
        pay.client.create_refund(
            out_refund_no="FREFUND0001", out_trade_no="FAULT000004", refund=400, total=1000
        )
    assert (exc.value.code, exc.value.ambiguous) == ("SYSTEM_ERROR", True)
    replay = pay.client.create_refund(
        out_refund_no="FREFUND0001", out_trade_no="FAULT000004", refund=400, total=1000
    )
    [row] = pay.sandbox.state("refunds")
    assert (row["refund_id"], row["amount"]) == (replay["refund_id"], 400)


def test_v3_transfer_bill_accept_then_error_then_query_finds_it(pay: PayWorld) -> None:
    def create() -> dict[str, Any]:
        return pay.client.create_transfer_bill(
            appid=pay.appid,
            out_bill_no="FBILL000001",
            transfer_scene_id="1000",
            openid=pay.openid,
            transfer_amount=1500,
            transfer_remark="返利",
            transfer_scene_report_infos=INFOS,
            notify_url=NOTIFY_URL,
        )

    pay.sandbox.fault("v3.transfer_bill", "accept_then_error")
    with pytest.raises(WeChatError) as exc:
        create()
    assert (exc.value.code, exc.value.ambiguous) == ("SYSTEM_ERROR", True)
    found = pay.client.query_transfer_bill("FBILL000001")
    assert (found["state"], found["transfer_amount"]) == ("WAIT_USER_CONFIRM", 1500)
    replay = create()
    assert replay["transfer_bill_no"] == found["transfer_bill_no"]
    assert replay["package_info"]
    [payout] = pay.sandbox.payouts(pay.mchid)
    assert (payout["key"], payout["amount_fen"]) == ("FBILL000001", 1500)
    assert pay.sandbox.balance(pay.mchid) == 100_000 - 1500


def test_v3_transfer_bill_not_enough_then_topup_same_key(sandbox: Sandbox, pay: PayWorld) -> None:
    sandbox.post(f"/merchants/{pay.mchid}/settings", {"transfer_confirm": False})

    def create() -> dict[str, Any]:
        return pay.client.create_transfer_bill(
            appid=pay.appid,
            out_bill_no="FBILL000002",
            transfer_scene_id="1000",
            openid=pay.openid,
            transfer_amount=150_000,
            transfer_remark="返利",
            transfer_scene_report_infos=INFOS,
        )

    with pytest.raises(WeChatError) as exc:
        create()
    assert (exc.value.code, exc.value.retryable, exc.value.http_status) == ("NOT_ENOUGH", True, 403)
    assert sandbox.payouts(pay.mchid) == []
    sandbox.post(f"/merchants/{pay.mchid}/topup", {"amount_fen": 50_000})
    assert create()["state"] == "ACCEPTED"
    sandbox.advance(2)
    [payout] = sandbox.payouts(pay.mchid)
    assert (payout["key"], payout["paid"]) == ("FBILL000002", True)
    assert sandbox.balance(pay.mchid) == 0


def test_mini_program_token_faults(sandbox: Sandbox) -> None:
    app = sandbox.mini_program()
    client = MiniProgramClient(app["appid"], app["secret"], ENDPOINTS)
    sandbox.fault("mp.token", "timeout")
    with pytest.raises(WeChatError) as exc:
        client.fetch_access_token()
    assert (exc.value.code, exc.value.ambiguous) == ("TIMEOUT", True)
    sandbox.fault("mp.stable_token", "malformed")
    with pytest.raises(WeChatError) as exc:
        client.fetch_access_token(stable=True)
    assert (exc.value.code, exc.value.ambiguous) == ("UNPARSABLE", True)


# -- Pay v2 ---------------------------------------------------------------------------------------------


@pytest.fixture
def v2_setup(sandbox: Sandbox) -> tuple[dict[str, Any], str, str]:
    merchant = sandbox.merchant(balance_fen=10_000)
    oa = sandbox.official(merchant["mchid"], safe_mode=False)
    return merchant, oa["appid"], sandbox.user()["openids"][oa["appid"]]


def test_v2_sendredpack_accept_then_error_same_billno_pays_once(
    sandbox: Sandbox, v2_setup: tuple[dict[str, Any], str, str]
) -> None:
    merchant, appid, openid = v2_setup
    billno = "RPFAULT0000001"
    sandbox.fault("v2.sendredpack", "accept_then_error")
    with v2_client(merchant) as client:
        with pytest.raises(WeChatError) as exc:
            send(client, appid, openid, billno, amount=700)
        assert (exc.value.code, exc.value.ambiguous) == ("SYSTEMERROR", True)
        result = send(client, appid, openid, billno, amount=700)  # the SAME mch_billno
    paid = [p for p in sandbox.payouts(merchant["mchid"]) if p["paid"]]
    assert [(p["key"], p["amount_fen"]) for p in paid] == [(billno, 700)]
    assert result["send_listid"] == sandbox.row("redpacks", mch_billno=billno)["detail_id"]
    assert sandbox.balance(merchant["mchid"]) == 10_000 - 700


@pytest.mark.parametrize(
    ("mode", "code"),
    [("timeout", "TIMEOUT"), ("malformed", "XML_UNPARSABLE")],
)
def test_v2_timeout_and_malformed_are_ambiguous(
    sandbox: Sandbox, v2_setup: tuple[dict[str, Any], str, str], mode: str, code: str
) -> None:
    merchant, appid, openid = v2_setup
    sandbox.fault("v2.sendredpack", mode, after_commit=True)
    with v2_client(merchant) as client:
        with pytest.raises(WeChatError) as exc:
            send(client, appid, openid, "RPFAULT0000002")
        assert (exc.value.code, exc.value.ambiguous) == (code, True)
        send(client, appid, openid, "RPFAULT0000002")
    assert [p["key"] for p in sandbox.payouts(merchant["mchid"])] == ["RPFAULT0000002"]


@pytest.mark.parametrize(
    ("code", "retryable", "ambiguous"),
    [("NOTENOUGH", True, False), ("SYSTEMERROR", False, True), ("PARAM_ERROR", False, False)],
)
def test_v2_error_codes_are_classified(
    sandbox: Sandbox,
    v2_setup: tuple[dict[str, Any], str, str],
    code: str,
    retryable: bool,
    ambiguous: bool,
) -> None:
    merchant, appid, openid = v2_setup
    sandbox.fault("v2.sendredpack", "error", code=code)
    with v2_client(merchant) as client, pytest.raises(WeChatError) as exc:
        send(client, appid, openid, "RPFAULT0000003")
    assert (exc.value.code, exc.value.retryable, exc.value.ambiguous) == (code, retryable, ambiguous)
    assert sandbox.payouts(merchant["mchid"]) == []


def test_v2_transfer_accept_then_error_same_key_pays_once(
    sandbox: Sandbox, v2_setup: tuple[dict[str, Any], str, str]
) -> None:
    merchant, appid, openid = v2_setup
    sandbox.fault("v2.transfers", "accept_then_error")
    with v2_client(merchant) as client:
        kwargs: dict[str, Any] = {
            "partner_trade_no": "PTNFAULT0001",
            "mch_appid": appid,
            "openid": openid,
            "amount": 100,
            "desc": "返利",
            "spbill_create_ip": "10.0.0.1",
        }
        with pytest.raises(WeChatError) as exc:
            client.transfer_to_wallet(**kwargs)
        assert exc.value.ambiguous
        client.transfer_to_wallet(**kwargs)
        assert client.query_transfer(partner_trade_no="PTNFAULT0001", appid=appid)["status"] == "SUCCESS"
    assert [(p["key"], p["paid"]) for p in sandbox.payouts(merchant["mchid"])] == [("PTNFAULT0001", True)]
    assert sandbox.balance(merchant["mchid"]) == 10_000 - 100
