"""Build ``wechat`` clients for one merchant from settings and its sealed credentials."""

from __future__ import annotations

import os
import threading
from datetime import datetime
from http.cookiejar import DefaultCookiePolicy

import requests
from flask import current_app

from app.core.errors import Unavailable
from app.gateway.log import RecordingHook
from app.merchants.models import Merchant
from app.merchants.service import merchant_secrets
from app.merchants.snapshots import MerchantSnapshot
from app.metrics.instruments import instrument_session
from app.settings import Settings
from wechat.endpoints import WeChatEndpoints
from wechat.miniprogram import MiniProgramClient
from wechat.official import OfficialAccountClient
from wechat.pay_v2 import MerchantV2Credentials, PayV2Client
from wechat.pay_v3 import PayV3Client
from wechat.v3_http import MerchantV3Credentials
from wechat.verify import PlatformKeys

# Parsed verification keys per merchant, per process: certificates are parsed once, not per callback.
# Keyed by (merchant id, last update) so a credentials update is picked up at once.
_KEYS: dict[tuple[int, datetime | None], PlatformKeys] = {}
_KEYS_LOCK = threading.Lock()


class _ThreadHttp(threading.local):
    session: requests.Session | None = None
    pid: int = 0


_HTTP = _ThreadHttp()


def http_session() -> requests.Session:
    """This thread's HTTP session for WeChat's APIs, so connections (and their TLS handshakes) are reused
    across calls and merchants instead of opened for every client built.

    Per thread, as a ``requests.Session`` is not promised to be thread-safe; per process too: a forked
    child (an RQ work horse) must not write to sockets its parent holds. The v2 client keeps a session of
    its own, as it presents the merchant's client certificate.
    """
    if _HTTP.session is None or _HTTP.pid != os.getpid():
        session = instrument_session(requests.Session())  # answer times for hongli_wechat_call_seconds
        # Shared by every merchant: WeChat's APIs set no cookies we want, and none may travel between them.
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        _HTTP.session, _HTTP.pid = session, os.getpid()
    return _HTTP.session


def endpoints() -> WeChatEndpoints:
    settings: Settings = current_app.extensions["hongli.settings"]
    return WeChatEndpoints(
        api_base=settings.wechat.api_base_url,
        pay_base=settings.wechat.pay_base_url,
        open_base=settings.wechat.open_base_url,
        timeout_seconds=settings.wechat.timeout_seconds,
    )


def mini_program_client(merchant: Merchant) -> MiniProgramClient:
    if not merchant.mp_appid:
        raise ValueError(f"merchant {merchant.slug} has no mini-program")
    return MiniProgramClient(
        merchant.mp_appid, merchant_secrets(merchant).mp_secret, endpoints(), session=http_session()
    )


def official_account_client(merchant: Merchant) -> OfficialAccountClient:
    if not merchant.oa_appid:
        raise ValueError(f"merchant {merchant.slug} has no official account")
    return OfficialAccountClient(
        merchant.oa_appid, merchant_secrets(merchant).oa_secret, endpoints(), session=http_session()
    )


def platform_keys(merchant: Merchant | MerchantSnapshot) -> PlatformKeys:
    """The WeChat Pay keys that sign this merchant's responses and notifications (certificates and/or
    the public key, several at once during a rotation)."""
    cache_key = (merchant.id, merchant.updated_at)
    with _KEYS_LOCK:
        keys = _KEYS.get(cache_key)
    if keys is not None:
        return keys
    keys = PlatformKeys()
    for pem in merchant.platform_certificates_pem or []:
        keys.add_certificate(pem)
    if merchant.wechatpay_public_key_id and merchant.wechatpay_public_key_pem:
        keys.add_public_key(merchant.wechatpay_public_key_id, merchant.wechatpay_public_key_pem)
    with _KEYS_LOCK:
        for stale in [k for k in _KEYS if k[0] == merchant.id]:
            del _KEYS[stale]
        _KEYS[cache_key] = keys
    return keys


def pay_client(merchant: Merchant, *, order_id: int | None = None) -> PayV3Client:
    """A Pay v3 client for ``merchant`` whose calls are recorded in the gateway log."""
    secrets = merchant_secrets(merchant)
    if not (merchant.mchid and merchant.pay_serial_no and secrets.pay_private_key_pem and secrets.apiv3_key):
        raise Unavailable(f"merchant {merchant.slug} has no WeChat Pay credentials")
    credentials = MerchantV3Credentials(
        mchid=merchant.mchid,
        serial_no=merchant.pay_serial_no,
        private_key_pem=secrets.pay_private_key_pem,
        apiv3_key=secrets.apiv3_key,
    )
    return PayV3Client(
        credentials,
        platform_keys(merchant),
        endpoints(),
        session=http_session(),
        hook=RecordingHook(merchant.id, order_id),
    )


def pay_v2_client(merchant: Merchant) -> PayV2Client:
    """A Pay v2 client (cash red packets, §5) for ``merchant``: its v2 key and API client certificate
    (mutual TLS). Recorded in the gateway log; use as a context manager so the temp PEMs are removed."""
    secrets = merchant_secrets(merchant)
    if not (merchant.mchid and secrets.v2_api_key and secrets.client_cert_pem and secrets.client_key_pem):
        raise Unavailable(f"merchant {merchant.slug} has no WeChat Pay v2 key and client certificate")
    credentials = MerchantV2Credentials(
        mch_id=merchant.mchid,
        api_key=secrets.v2_api_key,
        cert_pem=secrets.client_cert_pem,
        key_pem=secrets.client_key_pem,
    )
    return PayV2Client(credentials, endpoints(), hook=RecordingHook(merchant.id))
