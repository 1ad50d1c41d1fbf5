"""Legacy v2 (XML) payment notifications: signed with the merchant's v2 key, answered in XML (§4.3)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.events.models import DomainEvent
from app.gateway.models import GatewayEvent
from app.merchants.service import merchant_secrets
from app.reviews.models import ReviewItem
from tests.payments.conftest import Shop
from wechat.xml import parse_xml


def _notify_v2(shop: Shop, body: bytes, slug: str | None = None) -> dict[str, str]:
    response = shop.client.post(
        f"/wechat/{slug or shop.merchant.slug}/pay/notify-v2", data=body, headers={"Content-Type": "text/xml"}
    )
    # v2 always answers 200: return_code tells WeChat whether to retry.
    assert response.status_code == 200
    assert response.mimetype == "application/xml"
    return {k: v for k, v in parse_xml(response.data).items() if isinstance(v, str)}


def _paid_events(db_session: Session) -> list[int]:
    return [
        e.subject_id for e in db_session.scalars(select(DomainEvent).where(DomainEvent.type == "order.paid"))
    ]


def _unchanged(shop: Shop, db_session: Session, out_order_no: str) -> None:
    order = shop.order(out_order_no)
    assert (order["status"], order["paid_fen"]) == ("pending_payment", 0)
    assert _paid_events(db_session) == []


def test_signed_v2_notification_pays_the_order_once(shop: Shop, db_session: Session) -> None:
    # The sandbox merchant's v2 key is the one Hongli holds.
    assert merchant_secrets(shop.merchant).v2_api_key == shop.forger.v2_key
    order, out_trade_no = shop.prepared("SO-V1", 1234)
    body = shop.forger.v2_payment(out_trade_no, 1234)

    first = _notify_v2(shop, body)
    again = _notify_v2(shop, body)

    assert (first["return_code"], again["return_code"]) == ("SUCCESS", "SUCCESS")
    paid = shop.order("SO-V1")
    assert (paid["status"], paid["paid_fen"]) == ("paid", 1234)
    assert _paid_events(db_session) == [order["id"]]
    logged = db_session.scalars(select(GatewayEvent).where(GatewayEvent.api == "notification:v2")).all()
    assert [e.verified for e in logged] == [True, True]


def test_hmac_signed_v2_notification_is_accepted(shop: Shop, db_session: Session) -> None:
    from wechat.crypto import v2_sign
    from wechat.xml import to_xml

    order, out_trade_no = shop.prepared("SO-V2", 1500)
    fields = {k: v for k, v in parse_xml(shop.forger.v2_payment(out_trade_no, 1500)).items() if k != "sign"}
    fields["sign_type"] = "HMAC-SHA256"
    fields["sign"] = v2_sign(fields, shop.forger.v2_key, "HMAC-SHA256")
    assert _notify_v2(shop, to_xml(fields).encode())["return_code"] == "SUCCESS"
    assert _paid_events(db_session) == [order["id"]]


def test_bad_sign_is_refused(shop: Shop, db_session: Session) -> None:
    _, out_trade_no = shop.prepared("SO-V3", 1200)
    body = shop.forger.v2_payment(out_trade_no, 1200, sign_key="x" * 32)

    reply = _notify_v2(shop, body)

    assert reply["return_code"] == "FAIL"
    _unchanged(shop, db_session, "SO-V3")
    logged = db_session.scalars(select(GatewayEvent).where(GatewayEvent.api == "notification:v2")).all()
    assert [(e.verified, e.direction) for e in logged] == [(False, "inbound")]


def test_field_changed_after_signing_is_refused(shop: Shop, db_session: Session) -> None:
    _, out_trade_no = shop.prepared("SO-V4", 1200)
    signed = shop.forger.v2_payment(out_trade_no, 1200)
    body = signed.replace(b"<total_fee><![CDATA[1200]]>", b"<total_fee><![CDATA[1]]>")
    assert body != signed
    assert _notify_v2(shop, body)["return_code"] == "FAIL"
    _unchanged(shop, db_session, "SO-V4")


def test_signed_but_wrong_amount_is_refused_and_flagged(shop: Shop, db_session: Session) -> None:
    _, out_trade_no = shop.prepared("SO-V5", 1200)
    assert _notify_v2(shop, shop.forger.v2_payment(out_trade_no, 1))["return_code"] == "FAIL"
    _unchanged(shop, db_session, "SO-V5")
    assert [i.kind for i in db_session.scalars(select(ReviewItem))] == ["payment_mismatch"]


XXE = b"""<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><return_code>SUCCESS</return_code><result_code>SUCCESS</result_code><out_trade_no>&xxe;</out_trade_no>
<total_fee>1200</total_fee><sign>00</sign></xml>"""

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<xml><return_code>&lol3;</return_code></xml>"""


@pytest.mark.parametrize(
    "body",
    [XXE, LAUGHS, b"<xml><return_code>SUCCESS</return", b"not xml at all", b""],
    ids=["xxe", "entity_expansion", "truncated", "garbage", "empty"],
)
def test_hostile_or_broken_xml_is_refused(shop: Shop, db_session: Session, body: bytes) -> None:
    shop.prepared("SO-V6", 1200)
    reply = _notify_v2(shop, body)
    assert reply["return_code"] == "FAIL"
    assert "root:" not in reply.get("return_msg", "")
    _unchanged(shop, db_session, "SO-V6")


def test_failed_payment_notice_is_acknowledged_without_effect(shop: Shop, db_session: Session) -> None:
    _, out_trade_no = shop.prepared("SO-V7", 1200)
    body = shop.forger.v2_payment(out_trade_no, 1200, result_code="FAIL", err_code="NOTENOUGH")
    assert _notify_v2(shop, body)["return_code"] == "SUCCESS"
    _unchanged(shop, db_session, "SO-V7")


def test_unknown_merchant_is_refused(shop: Shop, db_session: Session) -> None:
    _, out_trade_no = shop.prepared("SO-V8", 1200)
    assert (
        _notify_v2(shop, shop.forger.v2_payment(out_trade_no, 1200), slug="nobody")["return_code"] == "FAIL"
    )
    _unchanged(shop, db_session, "SO-V8")


@pytest.mark.parametrize("total_fee", ["١٢٠٠", "１２００", "²", "1" + "0" * 5_000, "-1200", "12.00", ""])
def test_signed_total_fee_that_is_not_ascii_digits_is_refused(
    shop: Shop, db_session: Session, total_fee: str
) -> None:
    order = shop.register("SO-V2D", 1200)
    shop.pay_params(order["id"])
    body = shop.forger.v2_payment(shop.out_trade_no(order["id"]), 1200, total_fee=total_fee)

    assert _notify_v2(shop, body)["return_code"] == "FAIL"
    _unchanged(shop, db_session, "SO-V2D")
