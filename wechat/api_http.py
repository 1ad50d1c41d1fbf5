"""JSON calls on the OA / mini-program API host (errors as ``{"errcode","errmsg"}`` with HTTP 200)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import requests

from wechat.endpoints import WeChatEndpoints
from wechat.errors import WeChatError, classify_api_errcode
from wechat.gateway_log import GatewayEvent, GatewayHook, emit, redact_body

__all__ = ["ApiHttp"]


class ApiHttp:
    """Sends one call, maps a non-zero ``errcode`` to a classified ``WeChatError`` (code preserved)."""

    def __init__(
        self,
        endpoints: WeChatEndpoints,
        session: requests.Session | None = None,
        hook: GatewayHook | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.session = session or requests.Session()
        self.hook = hook

    def call(
        self,
        method: str,
        path: str,
        *,
        api: str,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        """Call ``path`` on ``api_base``; return the JSON object when ``errcode`` is absent or 0."""
        data_bytes = (
            json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            if body is not None
            else None
        )
        headers = {"Content-Type": "application/json; charset=utf-8"} if body is not None else {}
        try:
            response = self.session.request(
                method,
                self.endpoints.api(path),
                params=dict(params or {}),
                data=data_bytes,
                headers=headers,
                timeout=self.endpoints.timeout_seconds,
            )
        except requests.ConnectTimeout as exc:
            self._log(api, key, None, "CONNECT_TIMEOUT", body, None)
            raise WeChatError(str(exc), code="CONNECT_TIMEOUT", retryable=True, api=api) from exc
        except requests.RequestException as exc:
            code = "TIMEOUT" if isinstance(exc, requests.Timeout) else "CONNECTION_ERROR"
            self._log(api, key, None, code, body, None)
            raise WeChatError(str(exc), code=code, ambiguous=True, api=api) from exc
        raw = response.content
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            self._log(api, key, response.status_code, "UNPARSABLE", body, None)
            raise WeChatError(
                f"unparsable answer (HTTP {response.status_code})",
                code="UNPARSABLE",
                http_status=response.status_code,
                raw_body=raw,
                ambiguous=True,
                api=api,
            )
        errcode = parsed.get("errcode", 0)
        self._log(api, key, response.status_code, str(errcode) if errcode else None, body, parsed)
        if errcode not in (0, None):
            code_int = errcode if isinstance(errcode, int) and not isinstance(errcode, bool) else None
            retryable, ambiguous = classify_api_errcode(code_int) if code_int is not None else (False, True)
            raise WeChatError(
                str(parsed.get("errmsg", "")),
                code=str(errcode),
                http_status=response.status_code,
                raw_body=raw,
                retryable=retryable,
                ambiguous=ambiguous,
                api=api,
            )
        if response.status_code >= 400:
            raise WeChatError(
                f"HTTP {response.status_code}",
                code=f"HTTP_{response.status_code}",
                http_status=response.status_code,
                raw_body=raw,
                ambiguous=True,
                api=api,
            )
        return parsed

    def _log(
        self, api: str, key: str | None, status: int | None, code: str | None, request: Any, response: Any
    ) -> None:
        emit(
            self.hook,
            GatewayEvent(
                direction="outbound",
                api=api,
                idempotency_key=key,
                http_status=status,
                wechat_code=code,
                verified=None,
                body=redact_body({"request": request, "response": response}),
            ),
        )
