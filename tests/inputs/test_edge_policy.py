"""One input policy at the edge (issue 19): deep or oversized JSON, ids beyond 63 bits, Unicode digits
and money beyond its ceiling are answered 422 / 413 / 404 in the error envelope, never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.core.fields import BUDGET_DEPOSIT_MAX_FEN, MONEY_MAX_FEN, ORDER_MAX_FEN, REFUND_MAX_FEN
from app.core.inputs import ID_MAX, MAX_JSON_DEPTH, json_body_problem
from tests.console_client import Console
from tests.payments.conftest import Shop


def _envelope(response: TestResponse, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:300])
    error = response.json["error"]
    assert set(error) == {"code", "message", "details"}
    return error  # type: ignore[no-any-return]


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1_000, 100_000])
@pytest.mark.parametrize("path", ["/api/mp/v1/login", "/api/console/v1/session"])
def test_deep_json_to_anonymous_endpoints_is_a_422(client: FlaskClient, path: str, depth: int) -> None:
    for body in (_nested(depth), b"[" * depth + b"]" * depth):
        error = _envelope(client.post(path, data=body, content_type="application/json"), 422)
        assert error["code"] == "validation_error"
        assert error["details"]["max_depth"] == MAX_JSON_DEPTH


def test_json_within_the_depth_limit_reaches_the_schema(client: FlaskClient) -> None:
    body = b'{"appid": ' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b', "code": "x"}'
    error = _envelope(client.post("/api/mp/v1/login", data=body, content_type="application/json"), 422)
    assert "appid" in error["details"]["fields"]


def test_brackets_inside_strings_do_not_count() -> None:
    assert json_body_problem(b'{"note": "' + b"[{" * 10_000 + b'"}') is None
    assert json_body_problem(b'{"note": "\\"' + b"[" * 100 + b'"}') is None
    assert json_body_problem(b"[" * 33 + b"]" * 33) is not None


def test_a_number_too_long_to_convert_is_a_422(client: FlaskClient) -> None:
    # Python refuses int() of more than 4,300 digits (ValueError), which the JSON parser raised as a 500.
    for body in (b"1" + b"0" * 5_000, b'{"appid": 1' + b"0" * 5_000 + b', "code": "x"}'):
        response = client.post("/api/mp/v1/login", data=body, content_type="application/json")
        assert _envelope(response, 422)["code"] == "validation_error"


def test_a_body_over_the_size_limit_is_a_413(client: FlaskClient) -> None:
    body = b'{"code": "' + b"x" * 1_100_000 + b'"}'
    response = client.post("/api/mp/v1/login", data=body, content_type="application/json")
    assert _envelope(response, 413)["code"] == "request_entity_too_large"


@pytest.mark.parametrize(
    "segment",
    ["100000000000000000000000", str(ID_MAX + 1), "1e23", "²", "１", "-1", "0x10", "%C2%B2"],
)
def test_an_integer_path_segment_beyond_63_bits_is_a_404(shop: Shop, segment: str) -> None:
    response = shop.client.get(f"/api/mp/v1/orders/{segment}", headers=shop.consumer_headers)
    assert _envelope(response, 404)["code"] == "not_found"


def test_the_largest_id_is_looked_up(shop: Shop) -> None:
    response = shop.client.get(f"/api/mp/v1/orders/{ID_MAX}", headers=shop.consumer_headers)
    assert _envelope(response, 404)["code"] == "not_found"


@pytest.mark.parametrize("before", ["100000000000000000000000", str(ID_MAX + 1), "²", "١٢", "1.5", "0", "-3"])
def test_a_paging_parameter_out_of_range_is_a_422(shop: Shop, before: str) -> None:
    response = shop.client.get(
        "/api/mp/v1/wallet/entries", query_string={"before": before}, headers=shop.consumer_headers
    )
    assert "before" in _envelope(response, 422)["details"]["fields"]["query"]


@pytest.mark.parametrize("cursor", ["²", "²³", "١٢", "100000000000000000000000", str(ID_MAX + 1), "-1"])
def test_an_audit_cursor_that_is_no_cursor_is_a_422(owner: Console, cursor: str) -> None:
    response = owner.get("/api/console/v1/audit", query_string={"cursor": cursor})
    assert _envelope(response, 422)["details"] == {"field": "cursor"}


def _order(shop: Shop, **changes: Any) -> TestResponse:
    body = {
        "out_order_no": "SO-EDGE",
        "consumer": {"openid": shop.openid},
        "total_fen": 100,
        "items": [{"sku": "T", "name": "Tea", "quantity": 1, "unit_price_fen": 100}],
    } | changes
    return shop.client.post("/api/shop/v1/orders", json=body, headers=shop.shop_headers)


@pytest.mark.parametrize("total", [2**63, 2**63 - 1, 2**53 + 1, ORDER_MAX_FEN + 1, 10**30])
def test_an_order_total_beyond_its_ceiling_is_a_422(shop: Shop, total: int) -> None:
    items = [{"sku": "T", "name": "Tea", "quantity": 1, "unit_price_fen": total}]
    fields = _envelope(_order(shop, total_fen=total, items=items), 422)["details"]["fields"]
    assert "total_fen" in fields


def test_quantity_times_unit_price_cannot_make_an_order_beyond_the_ceiling(shop: Shop) -> None:
    # 100,000 × ORDER_MAX_FEN would be 10^14 fen: refused, whatever total is claimed.
    items = [{"sku": "T", "name": "Tea", "quantity": 100_000, "unit_price_fen": ORDER_MAX_FEN}]
    for total in (ORDER_MAX_FEN, 100_000 * ORDER_MAX_FEN, 2**63 - 1):
        assert _order(shop, total_fen=total, items=items).status_code == 422
    near_overflow = [{"sku": "T", "name": "Tea", "quantity": 92_233, "unit_price_fen": 100_000_000_000_000}]
    assert _order(shop, total_fen=2**63 - 1, items=near_overflow).status_code == 422


def test_an_order_at_the_ceiling_is_registered(shop: Shop) -> None:
    items = [{"sku": "T", "name": "Tea", "quantity": 1, "unit_price_fen": ORDER_MAX_FEN}]
    response = _order(shop, total_fen=ORDER_MAX_FEN, items=items)
    assert response.status_code == 201, response.json
    assert response.json["total_fen"] == ORDER_MAX_FEN


@pytest.mark.parametrize("consumer_id", [2**63, 10**23, 0, True, "1", 1.0])
def test_an_id_in_a_body_beyond_63_bits_or_of_another_type_is_a_422(shop: Shop, consumer_id: Any) -> None:
    fields = _envelope(_order(shop, consumer={"id": consumer_id}), 422)["details"]["fields"]
    assert "consumer" in fields


def test_a_refund_beyond_its_ceiling_is_a_422(shop: Shop) -> None:
    _order(shop)
    response = shop.refund("SO-EDGE", "RF-EDGE", REFUND_MAX_FEN + 1)
    assert "amount_fen" in _envelope(response, 422)["details"]["fields"]


def test_a_budget_deposit_beyond_its_ceiling_is_a_422(owner: Console) -> None:
    body = {"amount_fen": BUDGET_DEPOSIT_MAX_FEN + 1, "source": "merchant", "idempotency_key": "deposit-1"}
    response = owner.post(f"/api/console/v1/campaigns/{ID_MAX}/fund", json=body)
    assert "amount_fen" in _envelope(response, 422)["details"]["fields"]


def test_money_ceilings_are_declared_and_exact_in_every_client_language(client: FlaskClient) -> None:
    schemas = client.get("/openapi.json").json["components"]["schemas"]
    assert schemas["RegisterOrder"]["properties"]["total_fen"]["maximum"] == ORDER_MAX_FEN
    assert schemas["OrderItem"]["properties"]["unit_price_fen"]["maximum"] == ORDER_MAX_FEN
    assert schemas["RefundRequest"]["properties"]["amount_fen"]["maximum"] == REFUND_MAX_FEN
    assert schemas["Fund"]["properties"]["amount_fen"]["maximum"] == BUDGET_DEPOSIT_MAX_FEN
    # Far below 2^53, with room for sums: 100,000 deposits at the ceiling still read exactly as a double.
    assert 100_000 * max(ORDER_MAX_FEN, REFUND_MAX_FEN, BUDGET_DEPOSIT_MAX_FEN, MONEY_MAX_FEN) < 2**53


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Hongli-Merchant": "acme\x00"},
        {"X-Hongli-Merchant": "x" * 10_000},
        {"X-Hongli-Merchant": "²"},
        {"X-WX-AppId": "wx\x00"},
        {"Authorization": "Bearer hk_\x00"},
        {"Authorization": "Bearer " + "x" * 10_000},
    ],
    ids=lambda headers: repr(headers)[:40],
)
def test_hostile_headers_are_refused_not_a_500(shop: Shop, owner: Console, headers: dict[str, str]) -> None:
    for response in (
        owner.client.get("/api/console/v1/merchant", headers=owner.headers() | headers),
        shop.client.get("/api/mp/v1/me", headers=shop.consumer_headers | headers),
        shop.client.get("/api/shop/v1/whoami", headers=shop.shop_headers | headers),
    ):
        assert response.status_code < 500, response.get_data(as_text=True)[:300]


@pytest.mark.parametrize("url", ["/api/shop/v1/orders/SO%00", "/api/mp/v1/wallet/entries?before=1%00"])
def test_nul_in_the_url_is_a_422(shop: Shop, url: str) -> None:
    headers = shop.shop_headers if "/shop/" in url else shop.consumer_headers
    assert _envelope(shop.client.get(url, headers=headers), 422)["code"] == "validation_error"


@pytest.mark.parametrize("amount", [str(BUDGET_DEPOSIT_MAX_FEN + 1), str(2**63), "1" + "0" * 5_000, "²"])
def test_a_cli_budget_deposit_beyond_its_ceiling_is_refused(shop: Shop, app: Flask, amount: str) -> None:
    for args in (
        [
            "budgets",
            "deposit",
            "--merchant",
            shop.merchant.slug,
            "--amount-fen",
            amount,
            "--key",
            "bank-edge-1",
        ],
        ["budgets", "fund-platform", "--amount-fen", amount, "--key", "bank-edge-2"],
    ):
        result = app.test_cli_runner().invoke(args=args)
        assert result.exit_code == 2 and result.exception is not None, result.output
        assert "--amount-fen" in result.output
