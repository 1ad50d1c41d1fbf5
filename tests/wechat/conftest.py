"""Fixtures for the WeChat client tests: keys made at test time, a fixed clock, no network."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import responses
from wechat_fakes import APIV3_KEY, PAY_BASE, PLATFORM_SERIAL, private_pem, rsa_key, self_signed_cert

from wechat.endpoints import WeChatEndpoints
from wechat.pay_v3 import MerchantV3Credentials, PayV3Client
from wechat.verify import PlatformKeys


@pytest.fixture
def endpoints() -> WeChatEndpoints:
    return WeChatEndpoints(
        api_base="https://api.test", pay_base=PAY_BASE, open_base="https://open.test", timeout_seconds=2
    )


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    # assert_all_requests_are_fired=False: error-path tests register more than they call.
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def merchant() -> MerchantV3Credentials:
    return MerchantV3Credentials(
        mchid="1900007291",
        serial_no="MERCHANTSERIAL01",
        private_key_pem=private_pem(rsa_key("merchant")),
        apiv3_key=APIV3_KEY,
    )


@pytest.fixture
def platform_keys() -> PlatformKeys:
    keys = PlatformKeys()
    keys.add_certificate(self_signed_cert(rsa_key("platform"), int(PLATFORM_SERIAL, 16)))
    return keys


@pytest.fixture
def pay(
    merchant: MerchantV3Credentials, platform_keys: PlatformKeys, endpoints: WeChatEndpoints
) -> PayV3Client:
    return PayV3Client(merchant, platform_keys, endpoints)


@pytest.fixture
def now() -> int:
    return int(time.time())
