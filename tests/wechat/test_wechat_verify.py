"""PlatformKeys: rotation, public-key mode, clock skew, probes, tampering, rate-limited refresh."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pytest
import wechat_vectors as v
from wechat_fakes import public_pem, rsa_key, self_signed_cert, wechat_headers

from wechat.errors import VerificationError
from wechat.verify import PlatformKey, PlatformKeys, certificate_key

PUB_KEY_ID = "PUB_KEY_ID_0000000000000024101100397200000006"
NOW = 1_800_000_000


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _code(exc: pytest.ExceptionInfo[VerificationError]) -> str | None:
    return exc.value.code


def test_go_notification_vector_12() -> None:
    keys = PlatformKeys(clock=Clock(1624523846))
    assert keys.add_certificate(v.GO_PLATFORM_CERT) == "D7CE59D1F522D701"
    headers = {
        "Wechatpay-Serial": "D7CE59D1F522D701",
        "Wechatpay-Timestamp": "1624523846",
        "Wechatpay-Nonce": "EcZ9Cmy4Xyx1i6RlJQzLcCyEqDa26NBz",
        "Wechatpay-Signature": v.GO_NOTIFY_SIGNATURE_12,
    }
    assert keys.verify(headers, v.GO_NOTIFY_BODY_12) == "D7CE59D1F522D701"
    # Same bytes re-serialised (a space added) must fail: never verify parsed-and-dumped JSON.
    with pytest.raises(VerificationError) as excinfo:
        keys.verify(headers, v.GO_NOTIFY_BODY_12.replace(b'","', b'", "', 1))
    assert _code(excinfo) == "SIGNATURE_INVALID"


def test_rotation_two_certificates_verify_side_by_side() -> None:
    old, new = rsa_key("rot-old"), rsa_key("rot-new")
    keys = PlatformKeys(clock=Clock())
    keys.add_certificate(self_signed_cert(old, 0xA1))
    keys.add_certificate(self_signed_cert(new, 0xB2))
    body = b'{"a":1}'
    assert keys.verify(wechat_headers(old, "A1", body, timestamp=NOW), body) == "A1"
    assert keys.verify(wechat_headers(new, "b2", body, timestamp=NOW), body) == "B2"
    # A signature by the old key presented under the new serial fails.
    with pytest.raises(VerificationError):
        keys.verify(wechat_headers(old, "B2", body, timestamp=NOW), body)
    assert keys.preferred_serial() in {"A1", "B2"}


def test_public_key_mode_alongside_certificates() -> None:
    pk, cert_key = rsa_key("pubkey"), rsa_key("platform")
    keys = PlatformKeys(clock=Clock())
    keys.add_certificate(self_signed_cert(cert_key, 0x5A11))
    keys.add_public_key(PUB_KEY_ID, public_pem(pk))
    body = b"{}"
    assert keys.verify(wechat_headers(pk, PUB_KEY_ID, body, timestamp=NOW), body) == PUB_KEY_ID
    assert keys.verify(wechat_headers(cert_key, "5A11", body, timestamp=NOW), body) == "5A11"
    assert keys.preferred_serial() == PUB_KEY_ID
    with pytest.raises(ValueError):
        keys.add_public_key("NOT_A_PUB_KEY_ID", public_pem(pk))


@pytest.mark.parametrize(
    ("offset", "ok"), [(0, True), (299, True), (-299, True), (300, False), (-300, False), (86400, False)]
)
def test_timestamp_window(offset: int, ok: bool) -> None:
    key = rsa_key("platform")
    keys = PlatformKeys([certificate_key(self_signed_cert(key, 0x5A11))], clock=Clock())
    body = b"{}"
    headers = wechat_headers(key, "5A11", body, timestamp=NOW + offset)
    if ok:
        keys.verify(headers, body)
    else:
        with pytest.raises(VerificationError) as excinfo:
            keys.verify(headers, body)
        assert _code(excinfo) == "TIMESTAMP_SKEW"


def test_signtest_probe_is_rejected() -> None:
    key = rsa_key("platform")
    keys = PlatformKeys([certificate_key(self_signed_cert(key, 0x5A11))], clock=Clock())
    headers = wechat_headers(key, "5A11", b"{}", timestamp=NOW)
    headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"]
    with pytest.raises(VerificationError) as excinfo:
        keys.verify(headers, b"{}")
    assert _code(excinfo) == "SIGNATURE_PROBE"


def test_tampered_body_is_rejected() -> None:
    key = rsa_key("platform")
    keys = PlatformKeys([certificate_key(self_signed_cert(key, 0x5A11))], clock=Clock())
    headers = wechat_headers(key, "5A11", b'{"amount":1}', timestamp=NOW)
    with pytest.raises(VerificationError):
        keys.verify(headers, b'{"amount":100}')


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"Wechatpay-Signature": ""}, "SIGNATURE_MISSING"),
        ({"Wechatpay-Serial": ""}, "SIGNATURE_MISSING"),
        ({"Wechatpay-Timestamp": "12a4"}, "TIMESTAMP_MALFORMED"),
        ({"Wechatpay-Timestamp": "-1800000000"}, "TIMESTAMP_MALFORMED"),
        ({"Wechatpay-Signature-Type": "WECHATPAY2-SM2-WITH-SM3"}, "SIGNATURE_TYPE"),
        ({"Wechatpay-Signature": "%%%not-base64%%%"}, "SIGNATURE_INVALID"),
        ({"Wechatpay-Serial": "DEADBEEF"}, "UNKNOWN_SERIAL"),
    ],
)
def test_malformed_headers(change: dict[str, str], code: str) -> None:
    key = rsa_key("platform")
    keys = PlatformKeys([certificate_key(self_signed_cert(key, 0x5A11))], clock=Clock())
    headers = wechat_headers(key, "5A11", b"{}", timestamp=NOW) | change
    with pytest.raises(VerificationError) as excinfo:
        keys.verify(headers, b"{}")
    assert _code(excinfo) == code


def test_lowercase_header_names_are_accepted() -> None:
    key = rsa_key("platform")
    keys = PlatformKeys([certificate_key(self_signed_cert(key, 0x5A11))], clock=Clock())
    headers = {k.lower(): val for k, val in wechat_headers(key, "5A11", b"{}", timestamp=NOW).items()}
    assert keys.verify(headers, b"{}") == "5A11"


def test_expired_certificate_is_rejected() -> None:
    key = rsa_key("platform")
    cert = self_signed_cert(
        key,
        0x5A11,
        not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2021, 1, 1, tzinfo=dt.UTC),
    )
    keys = PlatformKeys([certificate_key(cert)], clock=Clock())
    with pytest.raises(VerificationError) as excinfo:
        keys.verify(wechat_headers(key, "5A11", b"{}", timestamp=NOW), b"{}")
    assert _code(excinfo) == "CERT_EXPIRED"


def test_unknown_serial_refresh_is_rate_limited() -> None:
    clock = Clock()
    new_key = rsa_key("rotated-in")
    calls: list[float] = []
    served: list[PlatformKey] = []

    def refresh() -> Iterable[PlatformKey]:
        calls.append(clock())
        return list(served)

    keys = PlatformKeys(clock=clock, refresh=refresh, refresh_interval=60)
    body = b"{}"
    # An attacker's random serials: only the first triggers a download inside the interval.
    for i in range(20):
        with pytest.raises(VerificationError):
            keys.verify(wechat_headers(new_key, f"BAD{i:02d}", body, timestamp=NOW), body)
    assert len(calls) == 1
    # WeChat rotates in a new certificate; after the interval one refresh picks it up.
    served.append(certificate_key(self_signed_cert(new_key, 0xC3)))
    with pytest.raises(VerificationError):
        keys.verify(wechat_headers(new_key, "C3", body, timestamp=NOW), body)
    clock.now += 61
    headers = wechat_headers(new_key, "C3", body, timestamp=int(clock.now))
    assert keys.verify(headers, body) == "C3"
    assert len(calls) == 2
    # Known now: no further downloads.
    keys.verify(headers, body)
    assert len(calls) == 2


def test_unknown_public_key_id_never_refreshes() -> None:
    calls: list[int] = []

    def refresh() -> Iterable[PlatformKey]:
        calls.append(1)
        return []

    keys = PlatformKeys(clock=Clock(), refresh=refresh)
    with pytest.raises(VerificationError):
        keys.verify(wechat_headers(rsa_key("pubkey"), PUB_KEY_ID, b"{}", timestamp=NOW), b"{}")
    assert calls == []


def test_refresh_failure_is_a_verification_error() -> None:
    def refresh() -> Iterable[PlatformKey]:
        raise ConnectionError("down")

    keys = PlatformKeys(clock=Clock(), refresh=refresh)
    with pytest.raises(VerificationError) as excinfo:
        keys.verify(wechat_headers(rsa_key("platform"), "77", b"{}", timestamp=NOW), b"{}")
    assert _code(excinfo) == "UNKNOWN_SERIAL"
