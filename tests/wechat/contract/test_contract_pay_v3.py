"""PayV3Client against the sandbox in both signing modes (platform certificate, WeChat Pay public key).

Covers §3 (certificates, JSAPI, query, close, refunds, notifications), §6.1 transfer bills, §7a vouchers
and §8 bills. State is read back from the sandbox's admin views, never from call counts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import pytest

from tests.wechat.contract.conftest import (
    ENDPOINTS,
    INFOS,
    NOTIFY_URL,
    PayWorld,
    Sandbox,
    platform_keys,
    v3_client,
    v3_credentials,
)
from wechat.errors import VerificationError, WeChatError
from wechat.pay_v3 import PayV3Client
from wechat.sandbox import crypto as sb_crypto
from wechat.sandbox.clock import rfc3339
from wechat.verify import PlatformKeys, certificate_key


def _prepay(pay: PayWorld, out_trade_no: str, total: int = 1999, **kw: Any) -> str:
    return pay.client.jsapi_prepay(
        appid=pay.appid,
        description="洪利测试商品",
        out_trade_no=out_trade_no,
        notify_url=NOTIFY_URL,
        amount_total=total,
        payer_openid=pay.openid,
        **kw,
    )


def _paid(pay: PayWorld, out_trade_no: str, total: int = 1999) -> dict[str, Any]:
    _prepay(pay, out_trade_no, total)
    return dict(pay.sandbox.post(f"/transactions/{out_trade_no}/pay"))


def _transfer(pay: PayWorld, out_bill_no: str, amount: int = 1000, **kw: Any) -> dict[str, Any]:
    return pay.client.create_transfer_bill(
        appid=pay.appid,
        out_bill_no=out_bill_no,
        transfer_scene_id="1000",
        openid=pay.openid,
        transfer_amount=amount,
        transfer_remark="返利",
        transfer_scene_report_infos=INFOS,
        notify_url=NOTIFY_URL,
        **kw,
    )


# -- platform certificates (§3.6) ------------------------------------------------------------------


def test_download_certificates_yields_the_platform_certificate(pay: PayWorld) -> None:
    [key] = pay.client.download_certificates()
    expected = certificate_key(pay.merchant["platform_certificate_pem"])
    assert key.serial == pay.merchant["platform_serial"].upper() == expected.serial
    assert key.public_key.public_numbers() == expected.public_key.public_numbers()
    # download_certificates only reports; refresh_certificates adds them to the key ring.
    assert (key.serial in pay.client.keys.serials()) == (pay.sign_mode == "platform")
    pay.client.refresh_certificates()
    assert key.serial in pay.client.keys.serials()


def test_unknown_serial_triggers_certificate_refresh(sandbox: Sandbox) -> None:
    """A merchant starting with no platform certificate bootstraps through the refresh callback."""
    merchant = sandbox.merchant(sign_mode="platform")
    app = sandbox.mini_program(merchant["mchid"])
    user = sandbox.user()
    keys = PlatformKeys()
    client = PayV3Client(v3_credentials(merchant), keys, ENDPOINTS)
    keys.set_refresh(client.download_certificates)
    prepay_id = client.jsapi_prepay(
        appid=app["appid"],
        description="bootstrap",
        out_trade_no="BOOT000001",
        notify_url=NOTIFY_URL,
        amount_total=100,
        payer_openid=user["openids"][app["appid"]],
    )
    assert keys.serials() == [merchant["platform_serial"].upper()]
    assert sandbox.row("orders", out_trade_no="BOOT000001")["prepay_id"] == prepay_id
    assert [k.serial for k in client.refresh_certificates()] == keys.serials()


def test_public_key_only_merchant_has_no_certificates(sandbox: Sandbox) -> None:
    merchant = sandbox.merchant(sign_mode="public_key", platform_certificates=False)
    client = v3_client(merchant, "public_key")
    with pytest.raises(WeChatError) as exc:
        client.download_certificates()
    assert (exc.value.code, exc.value.http_status, exc.value.final) == ("RESOURCE_NOT_EXISTS", 404, True)


# -- JSAPI orders (§3.7–§3.9) -----------------------------------------------------------------------


def test_jsapi_prepay_is_idempotent_and_conflicts_on_other_params(pay: PayWorld) -> None:
    first = _prepay(pay, "ORDER000001")
    assert _prepay(pay, "ORDER000001") == first
    row = pay.sandbox.row("orders", out_trade_no="ORDER000001")
    assert (row["prepay_id"], row["status"], row["total"], row["openid"]) == (
        first,
        "NOTPAY",
        1999,
        pay.openid,
    )
    with pytest.raises(WeChatError) as exc:
        _prepay(pay, "ORDER000001", total=2999)
    assert (exc.value.code, exc.value.http_status, exc.value.final) == ("OUT_TRADE_NO_USED", 403, True)
    assert pay.sandbox.row("orders", out_trade_no="ORDER000001")["total"] == 1999


def test_prepay_answers_are_verified_with_the_modes_key(pay: PayWorld) -> None:
    _prepay(pay, "ORDER000002")
    answer = pay.client.transport.request(
        "GET",
        "/v3/pay/transactions/out-trade-no/ORDER000002",
        api="pay.query_order",
        query={"mchid": pay.mchid},
    )
    assert answer.verified_serial == pay.expected_serial
    assert answer.request_id


def test_request_payment_params_verify_with_the_merchant_key(pay: PayWorld) -> None:
    prepay_id = _prepay(pay, "ORDER000003")
    params = pay.client.request_payment_params(pay.appid, prepay_id)
    assert (params["appId"], params["package"], params["signType"]) == (
        pay.appid,
        f"prepay_id={prepay_id}",
        "RSA",
    )
    message = f"{pay.appid}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n".encode()
    merchant_public = pay.client.transport.private_key.public_key()
    assert sb_crypto.rsa_verify(merchant_public, message, params["paySign"])


def test_query_by_out_trade_no_and_transaction_id(pay: PayWorld) -> None:
    _prepay(pay, "ORDER000004", total=2500)
    before = pay.client.query_order_by_out_trade_no("ORDER000004")
    assert (before["trade_state"], before["amount"]["total"]) == ("NOTPAY", 2500)
    assert "transaction_id" not in before
    paid = pay.sandbox.post("/transactions/ORDER000004/pay")
    after = pay.client.query_order_by_out_trade_no("ORDER000004")
    assert (after["trade_state"], after["transaction_id"]) == ("SUCCESS", paid["transaction_id"])
    assert after["payer"] == {"openid": pay.openid}
    by_id = pay.client.query_order_by_transaction_id(paid["transaction_id"])
    assert by_id == after
    assert pay.sandbox.balance(pay.mchid) == 100_000 + 2500
    with pytest.raises(WeChatError) as exc:
        pay.client.query_order_by_out_trade_no("NOSUCH0001")
    assert (exc.value.code, exc.value.http_status, exc.value.final) == ("ORDER_NOT_EXIST", 404, True)


def test_close_order(pay: PayWorld) -> None:
    _prepay(pay, "ORDER000005")
    pay.client.close_order("ORDER000005")
    assert pay.sandbox.row("orders", out_trade_no="ORDER000005")["status"] == "CLOSED"
    assert pay.client.query_order_by_out_trade_no("ORDER000005")["trade_state"] == "CLOSED"
    with pytest.raises(WeChatError) as exc:
        _prepay(pay, "ORDER000005")
    assert (exc.value.code, exc.value.final) == ("ORDER_CLOSED", True)
    pay.client.close_order("NEVERMADE01")  # 204 for an unknown number, as in production (§3.9)
    _paid(pay, "ORDER000006")
    with pytest.raises(WeChatError) as exc:
        pay.client.close_order("ORDER000006")
    assert (exc.value.code, exc.value.final) == ("ORDERPAID", True)
    assert pay.sandbox.row("orders", out_trade_no="ORDER000006")["status"] == "SUCCESS"


# -- refunds (§3.11) ----------------------------------------------------------------------------------


def test_create_and_query_refund(pay: PayWorld) -> None:
    paid = _paid(pay, "ORDER000007", total=3000)
    refund = pay.client.create_refund(
        out_refund_no="REFUND000007", out_trade_no="ORDER000007", refund=1000, total=3000, reason="退货"
    )
    assert (refund["status"], refund["amount"]["refund"], refund["transaction_id"]) == (
        "PROCESSING",
        1000,
        paid["transaction_id"],
    )
    again = pay.client.create_refund(
        out_refund_no="REFUND000007", out_trade_no="ORDER000007", refund=1000, total=3000, reason="退货"
    )
    assert again["refund_id"] == refund["refund_id"]
    with pytest.raises(WeChatError) as exc:
        pay.client.create_refund(
            out_refund_no="REFUND000007", out_trade_no="ORDER000007", refund=2000, total=3000
        )
    assert (exc.value.code, exc.value.final) == ("INVALID_REQUEST", True)

    assert pay.client.query_refund("REFUND000007")["status"] == "PROCESSING"
    pay.sandbox.advance(5)
    done = pay.client.query_refund("REFUND000007")
    assert (done["status"], done["out_refund_no"]) == ("SUCCESS", "REFUND000007")
    assert pay.sandbox.row("refunds", out_refund_no="REFUND000007")["status"] == "SUCCESS"
    assert pay.sandbox.balance(pay.mchid) == 100_000 + 3000 - 1000
    by_txn = pay.client.create_refund(
        out_refund_no="REFUND000008", transaction_id=paid["transaction_id"], refund=500, total=3000
    )
    assert by_txn["out_trade_no"] == "ORDER000007"


# -- notifications (§3.10, §3.12) ----------------------------------------------------------------------


def test_transaction_and_refund_notifications_parse(pay: PayWorld) -> None:
    paid = _paid(pay, "ORDER000009", total=4200)
    [(headers, body)] = pay.sandbox.inbox.received
    note = pay.client.parse_notification(headers, body)
    assert (note.event_type, note.resource_type, note.original_type) == (
        "TRANSACTION.SUCCESS",
        "encrypt-resource",
        "transaction",
    )
    assert note.serial == pay.expected_serial
    assert note.resource["out_trade_no"] == "ORDER000009"
    assert note.resource["transaction_id"] == paid["transaction_id"]
    assert (note.resource["trade_state"], note.resource["amount"]["total"]) == ("SUCCESS", 4200)
    [logged] = pay.sandbox.notifications(owner=pay.mchid, event_type="TRANSACTION.SUCCESS")
    assert (logged["id"], logged["state"], logged["resource"]) == (note.id, "delivered", note.resource)

    pay.client.create_refund(
        out_refund_no="REFUND000009", out_trade_no="ORDER000009", refund=4200, total=4200
    )
    pay.sandbox.post("/refunds/REFUND000009/resolve", {"status": "SUCCESS"})
    refund_note = pay.client.parse_notification(*pay.sandbox.inbox.received[-1])
    assert refund_note.event_type == "REFUND.SUCCESS"
    assert (refund_note.resource["out_refund_no"], refund_note.resource["refund_status"]) == (
        "REFUND000009",
        "SUCCESS",
    )
    assert refund_note.resource["amount"]["refund"] == 4200
    assert pay.sandbox.row("orders", out_trade_no="ORDER000009")["status"] == "REFUND"


def test_tampered_and_probe_notifications_are_refused(pay: PayWorld) -> None:
    pay.sandbox.post(f"/merchants/{pay.mchid}/settings", {"probe_notifications": True})
    _paid(pay, "ORDER000010")
    (probe_headers, probe_body), (headers, body) = pay.sandbox.inbox.received
    with pytest.raises(VerificationError) as exc:
        pay.client.parse_notification(probe_headers, probe_body)
    assert (exc.value.code, exc.value.ambiguous) == ("SIGNATURE_PROBE", False)
    tampered = body.replace(b'"TRANSACTION.SUCCESS"', b'"TRANSACTION.SUCCEED"')
    assert tampered != body
    with pytest.raises(VerificationError) as exc:
        pay.client.parse_notification(headers, tampered)
    assert exc.value.code == "SIGNATURE_INVALID"
    assert pay.client.parse_notification(headers, body).resource["out_trade_no"] == "ORDER000010"


def test_notification_with_another_merchants_apiv3_key_does_not_decrypt(pay: PayWorld) -> None:
    _paid(pay, "ORDER000011")
    [(headers, body)] = pay.sandbox.inbox.received
    other = PayV3Client(v3_credentials({**pay.merchant, "apiv3_key": "x" * 32}), pay.client.keys, ENDPOINTS)
    with pytest.raises(VerificationError) as exc:
        other.parse_notification(headers, body)
    assert exc.value.code == "DECRYPT_FAILED"


def test_retried_notification_is_freshly_signed_and_parses(pay: PayWorld) -> None:
    pay.sandbox.inbox.status = 500
    _paid(pay, "ORDER000013")
    pay.sandbox.inbox.status = 200
    pay.sandbox.advance(15)
    (first_headers, first_body), (headers, body) = pay.sandbox.inbox.received
    assert body == first_body
    assert headers["Wechatpay-Nonce"] != first_headers["Wechatpay-Nonce"]
    first = pay.client.parse_notification(first_headers, first_body)
    second = pay.client.parse_notification(headers, body)
    assert first.id == second.id
    [logged] = pay.sandbox.notifications(owner=pay.mchid)
    assert (logged["state"], [a["status"] for a in logged["attempts"]]) == ("delivered", [500, 200])


@pytest.mark.parametrize("outcome", ["ABNORMAL", "CLOSED"])
def test_refund_abnormal_and_closed_notifications(pay: PayWorld, outcome: str) -> None:
    _paid(pay, "ORDER000014", total=2000)
    pay.client.create_refund(
        out_refund_no="REFUND000014", out_trade_no="ORDER000014", refund=2000, total=2000
    )
    pay.sandbox.post("/refunds/REFUND000014/resolve", {"status": outcome})
    note = pay.client.parse_notification(*pay.sandbox.inbox.received[-1])
    assert (note.event_type, note.resource["refund_status"]) == (f"REFUND.{outcome}", outcome)
    assert pay.client.query_refund("REFUND000014")["status"] == outcome
    # A closed refund gives the money back to the merchant; an abnormal one stays out.
    expected = 100_000 + 2000 if outcome == "CLOSED" else 100_000
    assert pay.sandbox.balance(pay.mchid) == expected


def test_mixed_mode_notifications_verify_with_either_key(sandbox: Sandbox) -> None:
    """During a switch notifications are randomly signed by the certificate or the public key (§3.3)."""
    merchant = sandbox.merchant(sign_mode="mixed")
    app = sandbox.mini_program(merchant["mchid"])
    openid = sandbox.user()["openids"][app["appid"]]
    keys = platform_keys(merchant, "platform")
    keys.add_public_key(merchant["public_key_id"], merchant["public_key_pem"])
    client = PayV3Client(v3_credentials(merchant), keys, ENDPOINTS)
    for n in range(8):
        client.jsapi_prepay(
            appid=app["appid"],
            description="mixed",
            out_trade_no=f"MIXED{n:06d}",
            notify_url=NOTIFY_URL,
            amount_total=100,
            payer_openid=openid,
        )
        sandbox.post(f"/transactions/MIXED{n:06d}/pay")
    serials = {client.parse_notification(h, b).serial for h, b in sandbox.inbox.received}
    assert serials == {merchant["public_key_id"], merchant["platform_serial"].upper()}


# -- transfer bills (§6.1) -----------------------------------------------------------------------------


def test_transfer_bill_wait_user_confirm_query_and_confirm(pay: PayWorld) -> None:
    created = _transfer(pay, "BILL0000001", amount=1234)
    assert created["state"] == "WAIT_USER_CONFIRM"
    assert created["package_info"]
    assert _transfer(pay, "BILL0000001", amount=1234)["transfer_bill_no"] == created["transfer_bill_no"]
    with pytest.raises(WeChatError) as exc:
        _transfer(pay, "BILL0000001", amount=999)
    assert (exc.value.code, exc.value.final) == ("INVALID_REQUEST", True)

    queried = pay.client.query_transfer_bill("BILL0000001")
    assert (queried["state"], queried["transfer_amount"], queried["openid"]) == (
        "WAIT_USER_CONFIRM",
        1234,
        pay.openid,
    )
    assert pay.client.query_transfer_bill_by_id(created["transfer_bill_no"]) == queried
    assert pay.sandbox.balance(pay.mchid) == 100_000 - 1234

    pay.sandbox.post("/transfer-bills/BILL0000001/confirm")
    assert pay.client.query_transfer_bill("BILL0000001")["state"] == "SUCCESS"
    [payout] = pay.sandbox.payouts(pay.mchid)
    assert (payout["rail"], payout["key"], payout["amount_fen"], payout["paid"]) == (
        "transfer_bill",
        "BILL0000001",
        1234,
        True,
    )
    note = pay.client.parse_notification(*pay.sandbox.inbox.received[-1])
    assert note.event_type == "MCHTRANSFER.BILL.FINISHED"
    assert (note.resource["out_bill_no"], note.resource["state"]) == ("BILL0000001", "SUCCESS")


def test_transfer_bill_cancel(pay: PayWorld) -> None:
    _transfer(pay, "BILL0000002", amount=800)
    cancelled = pay.client.cancel_transfer_bill("BILL0000002")
    assert cancelled["state"] == "CANCELING"
    pay.sandbox.advance(1)
    assert pay.client.query_transfer_bill("BILL0000002")["state"] == "CANCELLED"
    assert pay.sandbox.row("transfer_bills", out_bill_no="BILL0000002")["state"] == "CANCELLED"
    assert pay.sandbox.balance(pay.mchid) == 100_000
    assert pay.client.cancel_transfer_bill("BILL0000002")["state"] == "CANCELLED"
    with pytest.raises(WeChatError) as exc:
        pay.client.query_transfer_bill("BILL9999999")
    assert (exc.value.code, exc.value.final) == ("NOT_FOUND", True)


def test_transfer_bill_with_encrypted_user_name(pay: PayWorld) -> None:
    """From 2,000 yuan the real name travels RSA-OAEP encrypted to the key named in Wechatpay-Serial."""
    pay.sandbox.post(f"/merchants/{pay.mchid}/topup", {"amount_fen": 200_000})
    created = _transfer(pay, "BILL0000003", amount=200_000, user_name="张三")
    assert created["state"] == "WAIT_USER_CONFIRM"
    row = pay.sandbox.row("transfer_bills", out_bill_no="BILL0000003")
    assert row["user_name_plain"] == "张三"
    with pytest.raises(WeChatError) as exc:
        _transfer(pay, "BILL0000004", amount=200_000)
    assert (exc.value.code, exc.value.final) == ("PARAM_ERROR", True)


def test_transfer_bill_without_confirmation_succeeds(pay: PayWorld) -> None:
    pay.sandbox.post(f"/merchants/{pay.mchid}/settings", {"transfer_confirm": False})
    created = _transfer(pay, "BILL0000005")
    assert (created["state"], "package_info" in created) == ("ACCEPTED", False)
    pay.sandbox.advance(2)
    assert pay.client.query_transfer_bill("BILL0000005")["state"] == "SUCCESS"


# -- vouchers (§7a) -------------------------------------------------------------------------------------


def test_favor_stock_create_start_send_query(pay: PayWorld) -> None:
    now = pay.sandbox.world.clock.now()
    stock = {
        "stock_name": "满10减1",
        "stock_type": "NORMAL",
        "available_begin_time": rfc3339(now),
        "available_end_time": rfc3339(now + 86400),
        "stock_use_rule": {"max_coupons": 10, "max_amount": 1000, "max_coupons_per_user": 1},
        "coupon_use_rule": {"fixed_normal_coupon": {"coupon_amount": 100, "transaction_minimum": 1000}},
        "no_cash": False,
    }
    created = pay.client.create_favor_stock(out_request_no="STOCK0001", stock=stock)
    assert pay.client.create_favor_stock(out_request_no="STOCK0001", stock=stock) == created
    stock_id = created["stock_id"]
    assert pay.sandbox.row("stocks", stock_id=stock_id)["status"] == "unactivated"
    started = pay.client.start_favor_stock(stock_id)
    assert started["stock_id"] == stock_id
    assert pay.sandbox.row("stocks", stock_id=stock_id)["status"] == "running"

    coupon_id = pay.client.send_favor_coupon(
        stock_id=stock_id, openid=pay.openid, out_request_no="SEND0001", appid=pay.appid
    )
    replay = pay.client.send_favor_coupon(
        stock_id=stock_id, openid=pay.openid, out_request_no="SEND0001", appid=pay.appid
    )
    assert replay == coupon_id
    coupon = pay.client.query_favor_coupon(coupon_id=coupon_id, openid=pay.openid, appid=pay.appid)
    assert (coupon["status"], coupon["stock_id"]) == ("SENDED", stock_id)
    assert coupon["normal_coupon_information"] == {"coupon_amount": 100, "transaction_minimum": 1000}
    [row] = pay.sandbox.state("coupons")
    assert (row["coupon_id"], row["openid"], row["status"]) == (coupon_id, pay.openid, "SENDED")
    with pytest.raises(WeChatError) as exc:  # one per user
        pay.client.send_favor_coupon(
            stock_id=stock_id, openid=pay.openid, out_request_no="SEND0002", appid=pay.appid
        )
    assert (exc.value.code, exc.value.final) == ("RULE_LIMIT", True)

    # The user pays with the voucher: COUPON.USE reaches the stock creator's callback URL.
    pay.sandbox.post(f"/merchants/{pay.mchid}/settings", {"coupon_notify_url": NOTIFY_URL})
    _prepay(pay, "ORDER000015", total=1500)
    pay.sandbox.post("/transactions/ORDER000015/pay", {"coupon_id": coupon_id})
    events = {}
    for headers, body in pay.sandbox.inbox.received:
        note = pay.client.parse_notification(headers, body)
        events[note.event_type] = note.resource
    assert events["COUPON.USE"]["coupon_id"] == coupon_id
    assert events["COUPON.USE"]["status"] == "USED"
    assert events["TRANSACTION.SUCCESS"]["amount"]["payer_total"] == 1400
    used = pay.client.query_favor_coupon(coupon_id=coupon_id, openid=pay.openid, appid=pay.appid)
    assert used["status"] == "USED"


# -- bills (§8) -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("gzipped", [True, False], ids=["gzip", "plain"])
def test_trade_bill_download_hash_verified(pay: PayWorld, gzipped: bool) -> None:
    paid = _paid(pay, "ORDER000012", total=5000)
    bill_date = dt.date(2026, 11, 24)  # business day of START in Beijing
    with pytest.raises(WeChatError) as exc:
        pay.client.trade_bill(bill_date)
    assert exc.value.code == "NO_STATEMENT_EXIST"
    pay.sandbox.advance(86400)

    bill = pay.client.trade_bill(bill_date, tar_type="GZIP" if gzipped else None)
    assert bill["hash_type"] == "SHA1"
    content = pay.client.download_bill(bill, gzipped=gzipped)
    assert hashlib.sha1(content).hexdigest() == bill["hash_value"]  # noqa: S324 - protocol hash
    text = content.decode("utf-8")
    assert f"`{paid['transaction_id']}" in text
    assert "`ORDER000012" in text
    assert "`50.00" in text

    with pytest.raises(VerificationError) as exc:
        pay.client.download_bill({**bill, "hash_value": "0" * 40}, gzipped=gzipped)
    assert exc.value.code == "HASH_MISMATCH"
