"""Forged or mismatched v3 notifications change nothing and are answered in WeChat's failure format.

Every forgery here is signed with the merchant's real WeChat Pay key (tests/payments/forge.py), so the
business checks are what refuse it — or, for the signature cases, exactly one thing is broken.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.events.models import DomainEvent
from app.gateway.models import GatewayEvent
from app.reviews.models import ReviewItem
from tests.payments.conftest import Shop
from tests.payments.forge import Forger

TOTAL = 8800


def _assert_nothing_changed(shop: Shop, db_session: Session, out_order_no: str) -> None:
    order = shop.order(out_order_no)
    assert (order["status"], order["paid_fen"], order["transaction_id"]) == ("pending_payment", 0, None)
    assert db_session.scalars(select(DomainEvent).where(DomainEvent.type == "order.paid")).all() == []


def _assert_wechat_failure(response: Any, status: int) -> None:
    assert response.status_code == status
    assert response.json["code"] == "FAIL"
    assert response.json["message"]


# Validly signed, decryptable, but the payment is not the one we asked for: refused and flagged.
BUSINESS_MISMATCHES: dict[str, Callable[[Forger, str], dict[str, Any]]] = {
    "wrong_amount": lambda f, no: f.transaction(no, TOTAL - 1),
    "amount_as_string": lambda f, no: f.transaction(no, TOTAL, amount={"total": "8800", "currency": "CNY"}),
    "wrong_currency": lambda f, no: f.transaction(no, TOTAL, amount={"total": TOTAL, "currency": "USD"}),
    "wrong_mchid": lambda f, no: f.transaction(no, TOTAL, mchid="1900000999"),
    "wrong_appid": lambda f, no: f.transaction(no, TOTAL, appid="wx0000000000000000"),
    "unknown_out_trade_no": lambda f, no: f.transaction("HL99999999P1", TOTAL),
    "trade_state_not_success": lambda f, no: f.transaction(no, TOTAL, trade_state="NOTPAY"),
    # Wrong types anywhere in the decrypted resource: refused like a wrong value, never a traceback.
    "amount_is_a_string": lambda f, no: f.transaction(no, TOTAL, amount="8800"),
    "amount_is_null": lambda f, no: f.transaction(no, TOTAL, amount=None),
    "amount_is_a_list": lambda f, no: f.transaction(no, TOTAL, amount=[TOTAL]),
    "amount_total_is_a_float": lambda f, no: f.transaction(no, TOTAL, amount={"total": 8800.0}),
    "amount_total_is_huge": lambda f, no: f.transaction(no, TOTAL, amount={"total": 10**30}),
    "currency_is_an_object": lambda f, no: f.transaction(no, TOTAL, amount={"total": TOTAL, "currency": {}}),
    "trade_state_is_a_list": lambda f, no: f.transaction(no, TOTAL, trade_state=["SUCCESS"]),
    "mchid_is_a_number": lambda f, no: f.transaction(no, TOTAL, mchid=1900000109),
}


@pytest.mark.parametrize("case", sorted(BUSINESS_MISMATCHES))
def test_mismatched_payment_is_refused_and_flagged(shop: Shop, db_session: Session, case: str) -> None:
    _, out_trade_no = shop.prepared("SO-R1", TOTAL)
    resource = BUSINESS_MISMATCHES[case](shop.forger, out_trade_no)
    headers, body = shop.forger.signed(resource)

    response = shop.notify(headers, body)

    _assert_wechat_failure(response, 400)
    _assert_nothing_changed(shop, db_session, "SO-R1")
    flagged = db_session.scalars(select(ReviewItem).where(ReviewItem.merchant_id == shop.merchant.id)).all()
    assert [(item.kind, item.reference) for item in flagged] == [
        ("payment_mismatch", f"notification:{resource['out_trade_no']}")
    ]
    # WeChat retries a refused notification: the retry does not pile up review items.
    assert shop.notify(*shop.forger.signed(resource)).status_code == 400
    assert len(db_session.scalars(select(ReviewItem)).all()) == 1


def _stale(f: Forger, body: bytes) -> dict[str, str]:
    return f.headers(body, timestamp=int(time.time()) - 301)


def _future(f: Forger, body: bytes) -> dict[str, str]:
    return f.headers(body, timestamp=int(time.time()) + 301)


def _bad_signature(f: Forger, body: bytes) -> dict[str, str]:
    # Signed, but by another of WeChat's keys than the one Wechatpay-Serial names.
    assert f.other_key is not None
    return f.headers(body, key=f.other_key)


def _body_changed_after_signing(f: Forger, body: bytes) -> dict[str, str]:
    return f.headers(body.replace(b'"summary":"forged"', b'"summary":"FORGED"'))


SIGNATURE_FAILURES: dict[str, tuple[Callable[[Forger, bytes], dict[str, str]], str]] = {
    "stale_timestamp": (_stale, "TIMESTAMP_SKEW"),
    "future_timestamp": (_future, "TIMESTAMP_SKEW"),
    "bad_signature": (_bad_signature, "SIGNATURE_INVALID"),
    "body_changed_after_signing": (_body_changed_after_signing, "SIGNATURE_INVALID"),
    "unknown_serial": (
        lambda f, b: f.headers(b, serial="5157F09EFDC096DE15EBE81A47057A7232F1B8E1"),
        "UNKNOWN_SERIAL",
    ),
    "unknown_public_key_id": (
        lambda f, b: f.headers(b, serial="PUB_KEY_ID_0000000000000000000000000000000000"),
        "UNKNOWN_SERIAL",
    ),
    "signtest_probe": (
        lambda f, b: f.headers(b, signature="WECHATPAY/SIGNTEST/" + "A" * 40),
        "SIGNATURE_PROBE",
    ),
    # str.isdigit() accepts these; int() does not (issue 19: it was a 500 with no signature needed).
    "unicode_digit_timestamp": (
        lambda f, b: f.headers(b) | {"Wechatpay-Timestamp": "²³"},
        "TIMESTAMP_MALFORMED",
    ),
    "arabic_indic_digit_timestamp": (
        lambda f, b: f.headers(b) | {"Wechatpay-Timestamp": "١٧٠٠٠٠٠٠٠٠"},
        "TIMESTAMP_MALFORMED",
    ),
    "missing_signature": (
        lambda f, b: {k: v for k, v in f.headers(b).items() if k != "Wechatpay-Signature"},
        "SIGNATURE_MISSING",
    ),
}


@pytest.mark.parametrize("case", sorted(SIGNATURE_FAILURES))
def test_unverifiable_notification_is_refused_and_logged(shop: Shop, db_session: Session, case: str) -> None:
    _, out_trade_no = shop.prepared("SO-R2", TOTAL)
    break_headers, code = SIGNATURE_FAILURES[case]
    body = shop.forger.body(shop.forger.transaction(out_trade_no, TOTAL))

    response = shop.notify(break_headers(shop.forger, body), body)

    _assert_wechat_failure(response, 401)
    _assert_nothing_changed(shop, db_session, "SO-R2")
    inbound = db_session.scalars(
        select(GatewayEvent).where(
            GatewayEvent.merchant_id == shop.merchant.id, GatewayEvent.direction == "inbound"
        )
    ).all()
    assert [(e.verified, e.wechat_code) for e in inbound] == [(False, code)]
    assert db_session.scalars(select(ReviewItem)).all() == []


def test_tampered_ciphertext_is_refused_even_when_signed(shop: Shop, db_session: Session) -> None:
    _, out_trade_no = shop.prepared("SO-R3", TOTAL)
    headers, body = shop.forger.signed(shop.forger.transaction(out_trade_no, TOTAL), tamper=True)

    response = shop.notify(headers, body)

    _assert_wechat_failure(response, 401)
    _assert_nothing_changed(shop, db_session, "SO-R3")
    logged = db_session.scalars(select(GatewayEvent).where(GatewayEvent.direction == "inbound")).all()
    assert [(e.verified, e.wechat_code) for e in logged] == [(False, "DECRYPT_FAILED")]


def test_wrong_apiv3_key_is_refused(shop: Shop, db_session: Session) -> None:
    _, out_trade_no = shop.prepared("SO-R4", TOTAL)
    forger = shop.forger
    wrong = Forger(forger.mchid, forger.appid, "x" * 32, forger.key, forger.serial)
    response = shop.notify(*wrong.signed(wrong.transaction(out_trade_no, TOTAL)))
    _assert_wechat_failure(response, 401)
    _assert_nothing_changed(shop, db_session, "SO-R4")


def test_unknown_merchant_slug_is_refused(shop: Shop, db_session: Session) -> None:
    _, out_trade_no = shop.prepared("SO-R5", TOTAL)
    headers, body = shop.forger.signed(shop.forger.transaction(out_trade_no, TOTAL))

    response = shop.notify(headers, body, slug="no-such-shop")

    _assert_wechat_failure(response, 404)
    _assert_nothing_changed(shop, db_session, "SO-R5")
    assert db_session.scalars(select(GatewayEvent).where(GatewayEvent.direction == "inbound")).all() == []


def test_another_merchants_keys_do_not_verify(shop: Shop, db_session: Session) -> None:
    """A notification signed for merchant B, delivered to merchant A's URL, is refused."""
    other = shop.sandbox.onboard("other-tea")
    other_forger = Forger.of_sandbox(shop.sandbox.world, other.mchid or "", other.mp_appid or "")
    _, out_trade_no = shop.prepared("SO-R6", TOTAL)
    headers, body = other_forger.signed(shop.forger.transaction(out_trade_no, TOTAL))
    _assert_wechat_failure(shop.notify(headers, body), 401)
    _assert_nothing_changed(shop, db_session, "SO-R6")


def test_the_honest_forgery_is_accepted(shop: Shop, db_session: Session) -> None:
    """Control: the forger's unbroken notification is what WeChat would send, and it pays the order."""
    order, out_trade_no = shop.prepared("SO-R7", TOTAL)
    response = shop.notify(*shop.forger.signed(shop.forger.transaction(out_trade_no, TOTAL)))
    assert response.status_code == 204, response.json
    paid = shop.order("SO-R7")
    assert (paid["status"], paid["paid_fen"]) == ("paid", TOTAL)
    assert [
        e.subject_id for e in db_session.scalars(select(DomainEvent).where(DomainEvent.type == "order.paid"))
    ] == [order["id"]]


@pytest.mark.parametrize("out_bill_no", [{"no": "PB1"}, 42, None, ["PB1"]], ids=repr)
def test_transfer_bill_notification_of_wrong_types_is_refused(
    shop: Shop, db_session: Session, out_bill_no: Any
) -> None:
    resource = {"mchid": shop.merchant.mchid, "out_bill_no": out_bill_no, "state": "SUCCESS"}

    response = shop.notify(*shop.forger.signed(resource, event_type="MCHTRANSFER.BILL.FINISHED"))

    _assert_wechat_failure(response, 400)


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_a_signed_body_nested_too_deep_is_refused(shop: Shop, db_session: Session, depth: int) -> None:
    body = (
        b'{"id": "x", "event_type": "TRANSACTION.SUCCESS", "resource": ' + b"[" * depth + b"]" * depth + b"}"
    )

    response = shop.notify(shop.forger.headers(body), body)

    _assert_wechat_failure(response, 401)


HOSTILE_HEADER_VALUES = [
    "²³",
    "١٧٠٠٠٠٠٠٠٠",
    "9" * 5_000,
    "-1",
    "1e9",
    " 1700000000",
    "x" * 10_000,
    "\x00",
    "",
]
HOSTILE_BODIES = [
    b"",
    b"not json",
    b"\xff\xfe",
    b"[" * 100_000 + b"]" * 100_000,
    b"1" + b"0" * 5_000,
    b'{"resource": "x"}',
    b'{"resource": {"algorithm": "AEAD_AES_256_GCM", "nonce": [], "ciphertext": {}}}',
    b'"' + b"x" * 1_100_000 + b'"',
]


def test_no_hostile_unsigned_notification_is_a_5xx(
    shop: Shop, db_session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever arrives at the WeChat endpoints unsigned or half-signed, the answer is WeChat's own failure
    format (v3: 4xx ``{"code": "FAIL"}``; v2: XML), nothing changes and no traceback is logged."""
    _, out_trade_no = shop.prepared("SO-R9", TOTAL)
    honest = shop.forger.body(shop.forger.transaction(out_trade_no, TOTAL))
    caplog.set_level("INFO")
    for header in ("Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Serial", "Wechatpay-Signature"):
        for value in HOSTILE_HEADER_VALUES:
            response = shop.notify(shop.forger.headers(honest) | {header: value}, honest)
            assert 400 <= response.status_code < 500, (header, value[:20], response.status_code)
            if response.status_code != 413:
                assert response.json["code"] == "FAIL", (header, value[:20], response.json)
    for body in HOSTILE_BODIES:
        for headers in (shop.forger.headers(honest), shop.forger.headers(body)):
            response = shop.notify(headers, body)
            assert 400 <= response.status_code < 500, (body[:20], response.status_code)
        v2 = shop.client.post(f"/wechat/{shop.merchant.slug}/pay/notify-v2", data=body)
        assert v2.status_code in (200, 413), (body[:20], v2.status_code)
    _assert_nothing_changed(shop, db_session, "SO-R9")
    assert [r for r in caplog.records if r.exc_info or r.levelno >= 40] == []


@pytest.mark.parametrize("slug", ["%00", "acme%00tea", "x" * 5_000, "²", "%F0%9F%92%B0", "ACME-TEA"])
def test_a_url_that_names_no_merchant_is_refused(
    shop: Shop, caplog: pytest.LogCaptureFixture, slug: str
) -> None:
    honest = shop.forger.body(shop.forger.transaction("HL1P1", TOTAL))
    _assert_wechat_failure(shop.notify(shop.forger.headers(honest), honest, slug=slug), 404)
    v2 = shop.client.post(f"/wechat/{slug}/pay/notify-v2", data=shop.forger.v2_payment("HL1P1", TOTAL))
    assert v2.status_code == 200 and b"FAIL" in v2.data
    assert [r for r in caplog.records if r.exc_info or r.levelno >= 40] == []
