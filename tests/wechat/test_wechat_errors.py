"""Retry classification tables (protocol doc §3.4, §5.2, §1)."""

from __future__ import annotations

import pytest

from wechat.errors import WeChatError, classify_api_errcode, classify_v2_code, classify_v3_code

RETRYABLE, AMBIGUOUS, FINAL = (True, False), (False, True), (False, False)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (500, "SYSTEM_ERROR", AMBIGUOUS),
        (500, "SYSTEMERROR", AMBIGUOUS),
        (500, "BANK_ERROR", AMBIGUOUS),
        (403, "NOT_ENOUGH", RETRYABLE),
        (403, "NOTENOUGH", RETRYABLE),
        (429, "FREQUENCY_LIMITED", RETRYABLE),
        (429, None, RETRYABLE),
        (400, "PARAM_ERROR", FINAL),
        (400, "INVALID_REQUEST", FINAL),
        (401, "SIGN_ERROR", FINAL),
        (403, "OUT_TRADE_NO_USED", FINAL),
        (404, "ORDER_NOT_EXIST", FINAL),
        (500, "OPENID_MISMATCH", FINAL),
        (502, None, AMBIGUOUS),
        (400, "SOMETHING_NEW", AMBIGUOUS),
    ],
)
def test_v3(status: int, code: str | None, expected: tuple[bool, bool]) -> None:
    assert classify_v3_code(status, code) == expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("SYSTEMERROR", AMBIGUOUS),
        ("PROCESSING", AMBIGUOUS),
        ("NOT_FOUND", AMBIGUOUS),
        ("NOTENOUGH", RETRYABLE),
        ("FREQ_LIMIT", RETRYABLE),
        ("SENDNUM_LIMIT", RETRYABLE),
        ("DAY_OVER_LIMITED", RETRYABLE),
        ("PARAM_ERROR", FINAL),
        ("FATAL_ERROR", FINAL),
        ("SEND_FAILED", FINAL),
        ("OPENID_ERROR", FINAL),
        ("BRAND_NEW_CODE", AMBIGUOUS),
        (None, AMBIGUOUS),
    ],
)
def test_v2(code: str | None, expected: tuple[bool, bool]) -> None:
    assert classify_v2_code(code) == expected


@pytest.mark.parametrize(
    ("errcode", "expected"),
    [(-1, RETRYABLE), (45011, RETRYABLE), (40029, FINAL), (40163, FINAL), (40001, FINAL), (99999, AMBIGUOUS)],
)
def test_api(errcode: int, expected: tuple[bool, bool]) -> None:
    assert classify_api_errcode(errcode) == expected


def test_error_carries_fields_and_renders() -> None:
    err = WeChatError("busy", code="SYSTEM_ERROR", http_status=500, raw_body=b"{}", ambiguous=True, api="x")
    assert (err.code, err.http_status, err.raw_body, err.final) == ("SYSTEM_ERROR", 500, b"{}", False)
    assert str(err) == "x: SYSTEM_ERROR (ambiguous http=500) busy"
