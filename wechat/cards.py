"""Card & offer (卡券) APIs and the ``wx.addCard`` ``cardExt`` (protocol doc §7b)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from wechat.api_http import ApiHttp
from wechat.crypto import card_signature, generate_nonce
from wechat.endpoints import WeChatEndpoints
from wechat.errors import WeChatError
from wechat.gateway_log import GatewayHook

__all__ = ["CardClient", "card_ext"]


class CardClient:
    """``card/*`` calls; the caller supplies a valid global ``access_token`` each time."""

    def __init__(
        self,
        endpoints: WeChatEndpoints,
        session: requests.Session | None = None,
        hook: GatewayHook | None = None,
    ) -> None:
        self.http = ApiHttp(endpoints, session, hook)

    def _post(
        self, path: str, access_token: str, body: Mapping[str, Any], *, api: str, key: str | None
    ) -> dict[str, Any]:
        return self.http.call(
            "POST", path, api=api, params={"access_token": access_token}, body=body, key=key
        )

    def create_card(self, access_token: str, card: Mapping[str, Any]) -> str:
        """``card/create`` with the ``{"card": {...}}`` body's inner object; returns ``card_id``."""
        data = self._post("/card/create", access_token, {"card": dict(card)}, api="card.create", key=None)
        card_id = data.get("card_id")
        if not isinstance(card_id, str) or not card_id:
            raise WeChatError(
                "card/create lacks card_id", code="UNPARSABLE", ambiguous=True, api="card.create"
            )
        return card_id

    def deposit_codes(self, access_token: str, card_id: str, codes: Sequence[str]) -> dict[str, Any]:
        """``card/code/deposit``: import custom codes (≤ 100 per call, UNVERIFIED limit)."""
        if not codes or len(codes) > 100:
            raise ValueError("deposit between 1 and 100 codes per call")
        return self._post(
            "/card/code/deposit",
            access_token,
            {"card_id": card_id, "code": list(codes)},
            api="card.deposit",
            key=card_id,
        )

    def get_code(
        self, access_token: str, code: str, *, card_id: str | None = None, check_consume: bool = True
    ) -> dict[str, Any]:
        """``card/code/get``; with ``check_consume`` an unusable code is an errcode (40099, 40127)."""
        body: dict[str, Any] = {"code": code, "check_consume": check_consume}
        if card_id:
            body["card_id"] = card_id
        return self._post("/card/code/get", access_token, body, api="card.get_code", key=code)

    def consume_code(self, access_token: str, code: str, *, card_id: str | None = None) -> dict[str, Any]:
        """``card/code/consume`` (redeem). Retry after an ambiguous error may answer 40099 = already done."""
        body: dict[str, Any] = {"code": code}
        if card_id:
            body["card_id"] = card_id
        return self._post("/card/code/consume", access_token, body, api="card.consume", key=code)


def card_ext(
    *,
    api_ticket: str,
    card_id: str,
    code: str = "",
    openid: str = "",
    timestamp: str,
    nonce_str: str | None = None,
    outer_str: str = "",
) -> str:
    """JSON string for ``wx.addCard`` ``cardExt``; signature over the sorted VALUES (§7b.1)."""
    nonce = nonce_str or generate_nonce()
    ext: dict[str, str] = {"timestamp": timestamp, "nonce_str": nonce}
    if code:
        ext["code"] = code
    if openid:
        ext["openid"] = openid
    if outer_str:
        ext["outer_str"] = outer_str
    ext["signature"] = card_signature(
        api_ticket=api_ticket, timestamp=timestamp, nonce_str=nonce, card_id=card_id, code=code, openid=openid
    )
    return json.dumps(ext, separators=(",", ":"))
