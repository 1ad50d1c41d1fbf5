"""Signed HTTP transport for WeChat Pay API v3 on ``requests`` (protocol doc §3.2–§3.4).

Every request is signed over the exact bytes sent; every 2xx answer is verified before its body is
used; transport failures after the request may have left are reported as ambiguous.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from wechat.crypto import authorization_header, generate_nonce, load_private_key
from wechat.endpoints import WeChatEndpoints
from wechat.errors import VerificationError, WeChatError, classify_v3_code
from wechat.gateway_log import GatewayHook, emit_outbound
from wechat.verify import PUBLIC_KEY_ID_PREFIX, PlatformKeys, header_lookup

__all__ = ["MerchantV3Credentials", "V3Response", "V3Transport", "encode_json", "path_segment"]

USER_AGENT = "Hongli-wechat/1.0 (+python-requests)"


@dataclass(frozen=True, slots=True)
class MerchantV3Credentials:
    """A direct merchant's v3 identity; secrets are excluded from ``repr``."""

    mchid: str
    serial_no: str
    private_key_pem: str = field(repr=False)
    apiv3_key: str = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.apiv3_key.encode("utf-8")) != 32:
            raise ValueError("MerchantV3Credentials.apiv3_key must be 32 ASCII characters (§3.1)")


@dataclass(frozen=True, slots=True)
class V3Response:
    """A verified (or deliberately unverified, e.g. bill files) 2xx answer."""

    status: int
    body: bytes
    data: dict[str, Any]
    headers: dict[str, str]
    verified_serial: str | None

    @property
    def request_id(self) -> str | None:
        """WeChat's ``Request-ID``, to quote in support tickets."""
        return self.headers.get("request-id")


def encode_json(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the bytes signed are the bytes sent (§3.2 key facts)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def path_segment(value: str) -> str:
    """Percent-encode one caller value placed in a URL path so it cannot add segments or a query."""
    if not value:
        raise ValueError("empty path parameter")
    return quote(value, safe="")


class V3Transport:
    """Signs, sends and verifies v3 calls for one merchant; shares one ``requests.Session``."""

    def __init__(
        self,
        merchant: MerchantV3Credentials,
        keys: PlatformKeys,
        endpoints: WeChatEndpoints,
        session: requests.Session | None = None,
        hook: GatewayHook | None = None,
    ) -> None:
        self.merchant = merchant
        self.keys = keys
        self.endpoints = endpoints
        self.session = session or requests.Session()
        self.hook = hook
        self._private_key: rsa.RSAPrivateKey = load_private_key(merchant.private_key_pem)

    @property
    def private_key(self) -> rsa.RSAPrivateKey:
        """The merchant signing key (also used for ``paySign``)."""
        return self._private_key

    def request(
        self,
        method: str,
        path: str,
        *,
        api: str,
        idempotency_key: str | None = None,
        query: Mapping[str, str | int] | None = None,
        body: Mapping[str, Any] | None = None,
        verify: bool = True,
        wechatpay_serial: str | None = None,
        absolute_url: str | None = None,
        parse_json: bool = True,
    ) -> V3Response:
        """Send one signed call; return the verified answer or raise a classified ``WeChatError``.

        ``verify=False`` is only for answers WeChat does not sign (bill files, §3.3 rule 4) and for the
        bootstrap certificate download, whose content is authenticated by AEAD instead.
        """
        body_bytes = encode_json(body) if body is not None else b""
        url = absolute_url or self.endpoints.pay(path)
        if query:
            url = f"{url}?{urlencode(list(query.items()))}"
        headers = {
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        if body is not None:
            headers["Content-Type"] = "application/json"
        serial = wechatpay_serial or self._public_key_serial()
        if serial:
            # Names the key for encrypted fields, and in public-key mode asks WeChat to sign the
            # answer with that key (§3.3 "During a switch").
            headers["Wechatpay-Serial"] = serial
        prepared = self.session.prepare_request(
            requests.Request(method.upper(), url, data=body_bytes or None, headers=headers)
        )
        # Sign what requests will actually put on the wire (path_url keeps its own quoting).
        timestamp = str(int(time.time()))
        prepared.headers["Authorization"] = authorization_header(
            mchid=self.merchant.mchid,
            serial_no=self.merchant.serial_no,
            private_key=self._private_key,
            method=prepared.method or method.upper(),
            canonical_url=prepared.path_url,
            body=body_bytes,
            timestamp=timestamp,
            nonce=generate_nonce(),
        )
        request_log = json.loads(body_bytes) if body_bytes else {}
        try:
            settings = self.session.merge_environment_settings(prepared.url, {}, None, None, None)
            response = self.session.send(prepared, timeout=self.endpoints.timeout_seconds, **settings)
        except requests.ConnectTimeout as exc:
            # Never connected, so nothing was sent: safe to retry later.
            self._log(api, idempotency_key, None, "CONNECT_TIMEOUT", None, request_log, None)
            raise WeChatError(str(exc), code="CONNECT_TIMEOUT", retryable=True, api=api) from exc
        except requests.Timeout as exc:
            self._log(api, idempotency_key, None, "TIMEOUT", None, request_log, None)
            raise WeChatError(str(exc), code="TIMEOUT", ambiguous=True, api=api) from exc
        except requests.RequestException as exc:
            # A reset may happen after WeChat received the request: outcome unknown (§3.4).
            self._log(api, idempotency_key, None, "CONNECTION_ERROR", None, request_log, None)
            raise WeChatError(str(exc), code="CONNECTION_ERROR", ambiguous=True, api=api) from exc
        return self._handle(
            response,
            api=api,
            idempotency_key=idempotency_key,
            verify=verify,
            req=request_log,
            parse_json=parse_json,
        )

    def _public_key_serial(self) -> str | None:
        serial = self.keys.preferred_serial()
        return serial if serial and serial.startswith(PUBLIC_KEY_ID_PREFIX) else None

    def _handle(
        self,
        response: requests.Response,
        *,
        api: str,
        idempotency_key: str | None,
        verify: bool,
        req: Any,
        parse_json: bool,
    ) -> V3Response:
        status = response.status_code
        raw = response.content
        headers = header_lookup(response.headers)
        if not 200 <= status < 300:
            code, message, error_body = _error_fields(raw)
            retryable, ambiguous = classify_v3_code(status, code)
            self._log(api, idempotency_key, status, code, None, req, error_body, headers.get("request-id"))
            raise WeChatError(
                message or f"HTTP {status}",
                code=code or f"HTTP_{status}",
                http_status=status,
                raw_body=raw,
                retryable=retryable,
                ambiguous=ambiguous,
                api=api,
            )
        verified_serial: str | None = None
        if verify:
            try:
                verified_serial = self.keys.verify(headers, raw)
            except VerificationError as exc:
                self._log(api, idempotency_key, status, exc.code, False, req, None, headers.get("request-id"))
                exc.http_status, exc.raw_body, exc.api = status, raw, api
                raise
        data: dict[str, Any] = {}
        if raw and parse_json:
            try:
                parsed = json.loads(raw)
            except ValueError as exc:
                self._log(api, idempotency_key, status, "UNPARSABLE", verify, req, None)
                raise WeChatError(
                    "unparsable 2xx body",
                    code="UNPARSABLE",
                    http_status=status,
                    raw_body=raw,
                    ambiguous=True,
                    api=api,
                ) from exc
            if not isinstance(parsed, dict):
                raise WeChatError(
                    "2xx body is not a JSON object",
                    code="UNPARSABLE",
                    http_status=status,
                    raw_body=raw,
                    ambiguous=True,
                    api=api,
                )
            data = parsed
        self._log(api, idempotency_key, status, None, verify or None, req, data, headers.get("request-id"))
        return V3Response(
            status=status, body=raw, data=data, headers=headers, verified_serial=verified_serial
        )

    def _log(
        self,
        api: str,
        key: str | None,
        status: int | None,
        code: str | None,
        verified: bool | None,
        request_body: Any,
        response_body: Any,
        request_id: str | None = None,
    ) -> None:
        emit_outbound(
            self.hook,
            api=api,
            key=key,
            status=status,
            code=code,
            verified=verified,
            request_body=request_body,
            response_body=response_body,
            request_id=request_id,
        )

    def same_origin(self, url: str) -> bool:
        """True when ``url`` is on the configured Pay host (bill download URLs, §8)."""
        ours, theirs = urlsplit(self.endpoints.pay_base), urlsplit(url)
        return (ours.scheme, ours.netloc) == (theirs.scheme, theirs.netloc)


def _error_fields(raw: bytes) -> tuple[str | None, str, Any]:
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        return None, "unparsable error body", None
    if not isinstance(data, dict):
        return None, "error body is not a JSON object", None
    code = data.get("code")
    message = data.get("message")
    return (str(code) if code else None), (str(message) if message else ""), data
