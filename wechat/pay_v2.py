"""WeChat Pay v2 (XML) money-out: cash red packets and legacy wallet transfers, over mutual TLS.

``mch_billno`` / ``partner_trade_no`` are required arguments: the caller saves them before the call
and reuses them on every retry (protocol doc §5.2; wechatpy would invent a random one per call).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import requests
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from wechat.crypto import generate_nonce, v2_sign, v2_verify
from wechat.endpoints import WeChatEndpoints
from wechat.errors import VerificationError, WeChatError, WeChatXMLError, classify_v2_code
from wechat.gateway_log import GatewayEvent, GatewayHook, emit, emit_outbound, redact_body
from wechat.xml import parse_xml, to_xml

__all__ = [
    "MerchantV2Credentials",
    "PayV2Client",
    "V2Notification",
    "decrypt_refund_req_info",
    "parse_v2_notification",
    "v2_reply",
]


@dataclass(frozen=True, slots=True)
class MerchantV2Credentials:
    """APIv2 key plus the merchant API certificate and key (PEM) used as the TLS client identity."""

    mch_id: str
    api_key: str = field(repr=False)
    cert_pem: str = field(repr=False)
    key_pem: str = field(repr=False)


def _fen(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer number of fen, got {value!r}")
    return value


class _ClientCertFiles:
    """The PEMs in a private temp dir, because ``requests`` only takes client certs as paths."""

    def __init__(self, cert_pem: str, key_pem: str) -> None:
        self.directory = tempfile.mkdtemp(prefix="hongli-mtls-")  # mode 0700
        self.cert_path = self._write("apiclient_cert.pem", cert_pem)
        self.key_path = self._write("apiclient_key.pem", key_pem)
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.directory, True)

    def _write(self, name: str, content: str) -> str:
        path = os.path.join(self.directory, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(content)
        return path

    def remove(self) -> None:
        self._finalizer()


class PayV2Client:
    """v2 calls for one merchant; use as a context manager (or call :meth:`close`) to drop the temp PEMs."""

    def __init__(
        self,
        merchant: MerchantV2Credentials,
        endpoints: WeChatEndpoints,
        session: requests.Session | None = None,
        hook: GatewayHook | None = None,
        nonce: Callable[[], str] = generate_nonce,
    ) -> None:
        self.merchant = merchant
        self.endpoints = endpoints
        self.session = session or requests.Session()
        self.hook = hook
        self._nonce = nonce
        self._cert_files: _ClientCertFiles | None = None

    def close(self) -> None:
        """Delete the temporary certificate files (they are recreated if the client is used again)."""
        if self._cert_files is not None:
            self._cert_files.remove()
            self._cert_files = None

    def __enter__(self) -> PayV2Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- red packets (§5) ---------------------------------------------------------------------------

    def send_red_packet(
        self,
        *,
        mch_billno: str,
        wxappid: str,
        re_openid: str,
        total_amount: int,
        send_name: str,
        wishing: str,
        act_name: str,
        remark: str,
        client_ip: str,
        scene_id: str | None = None,
        risk_info: str | None = None,
        consume_mch_id: str | None = None,
    ) -> dict[str, Any]:
        """``sendredpack``: one cash red packet; returns WeChat's fields incl. ``send_listid``."""
        return self._money_call(
            "mmpaymkttransfers/sendredpack",
            api="redpack.send",
            key=mch_billno,
            fields={
                "mch_billno": mch_billno,
                "mch_id": self.merchant.mch_id,
                "wxappid": wxappid,
                "send_name": send_name,
                "re_openid": re_openid,
                "total_amount": _fen("total_amount", total_amount),
                "total_num": 1,
                "wishing": wishing,
                "client_ip": client_ip,
                "act_name": act_name,
                "remark": remark,
                "scene_id": scene_id,
                "risk_info": risk_info,
                "consume_mch_id": consume_mch_id,
            },
        )

    def send_group_red_packet(
        self,
        *,
        mch_billno: str,
        wxappid: str,
        re_openid: str,
        total_amount: int,
        total_num: int,
        send_name: str,
        wishing: str,
        act_name: str,
        remark: str,
        amt_type: str = "ALL_RAND",
        scene_id: str | None = None,
        risk_info: str | None = None,
        consume_mch_id: str | None = None,
    ) -> dict[str, Any]:
        """``sendgroupredpack``: a fission packet of ``total_num`` (≥ 3) shares seeded to ``re_openid``."""
        if isinstance(total_num, bool) or not isinstance(total_num, int) or total_num < 3:
            raise ValueError("a group red packet has total_num >= 3")
        return self._money_call(
            "mmpaymkttransfers/sendgroupredpack",
            api="redpack.send_group",
            key=mch_billno,
            fields={
                "mch_billno": mch_billno,
                "mch_id": self.merchant.mch_id,
                "wxappid": wxappid,
                "send_name": send_name,
                "re_openid": re_openid,
                "total_amount": _fen("total_amount", total_amount),
                "total_num": total_num,
                "amt_type": amt_type,
                "wishing": wishing,
                "act_name": act_name,
                "remark": remark,
                "scene_id": scene_id,
                "risk_info": risk_info,
                "consume_mch_id": consume_mch_id,
            },
        )

    def query_red_packet(self, *, mch_billno: str, appid: str) -> dict[str, Any]:
        """``gethbinfo``: status of a packet. NOT_FOUND is ambiguous-ish: it may still be landing (§5.5)."""
        return self._money_call(
            "mmpaymkttransfers/gethbinfo",
            api="redpack.query",
            key=mch_billno,
            fields={
                "mch_billno": mch_billno,
                "mch_id": self.merchant.mch_id,
                "appid": appid,
                "bill_type": "MCHT",
            },
        )

    # -- legacy wallet transfers (§6.3) --------------------------------------------------------------

    def transfer_to_wallet(
        self,
        *,
        partner_trade_no: str,
        mch_appid: str,
        openid: str,
        amount: int,
        desc: str,
        spbill_create_ip: str,
        check_name: str = "NO_CHECK",
        re_user_name: str | None = None,
    ) -> dict[str, Any]:
        """``promotion/transfers``; note this API spells the merchant field ``mchid``."""
        if check_name == "FORCE_CHECK" and not re_user_name:
            raise ValueError("FORCE_CHECK needs re_user_name")
        return self._money_call(
            "mmpaymkttransfers/promotion/transfers",
            api="transfer_v2.send",
            key=partner_trade_no,
            fields={
                "mch_appid": mch_appid,
                "mchid": self.merchant.mch_id,
                "partner_trade_no": partner_trade_no,
                "openid": openid,
                "check_name": check_name,
                "re_user_name": re_user_name,
                "amount": _fen("amount", amount),
                "desc": desc,
                "spbill_create_ip": spbill_create_ip,
            },
        )

    def query_transfer(self, *, partner_trade_no: str, appid: str) -> dict[str, Any]:
        """``gettransferinfo`` for a legacy transfer."""
        return self._money_call(
            "mmpaymkttransfers/gettransferinfo",
            api="transfer_v2.query",
            key=partner_trade_no,
            fields={"partner_trade_no": partner_trade_no, "mch_id": self.merchant.mch_id, "appid": appid},
        )

    # -- transport ----------------------------------------------------------------------------------

    def _money_call(self, path: str, *, api: str, key: str, fields: Mapping[str, object]) -> dict[str, Any]:
        if not key:
            raise ValueError(f"{api}: the idempotency key is required")
        params: dict[str, object] = {k: val for k, val in fields.items() if val is not None}
        params["nonce_str"] = self._nonce()
        params["sign"] = v2_sign(params, self.merchant.api_key)
        body = to_xml(params).encode("utf-8")
        if self._cert_files is None:
            self._cert_files = _ClientCertFiles(self.merchant.cert_pem, self.merchant.key_pem)
        request_log = {k: val for k, val in params.items() if k != "sign"}
        try:
            response = self.session.post(
                self.endpoints.pay(path),
                data=body,
                headers={"Content-Type": "text/xml; charset=utf-8"},
                cert=(self._cert_files.cert_path, self._cert_files.key_path),
                timeout=self.endpoints.timeout_seconds,
            )
        except requests.ConnectTimeout as exc:
            self._log(api, key, None, "CONNECT_TIMEOUT", None, request_log, None)
            raise WeChatError(str(exc), code="CONNECT_TIMEOUT", retryable=True, api=api) from exc
        except requests.Timeout as exc:
            self._log(api, key, None, "TIMEOUT", None, request_log, None)
            raise WeChatError(str(exc), code="TIMEOUT", ambiguous=True, api=api) from exc
        except requests.RequestException as exc:
            self._log(api, key, None, "CONNECTION_ERROR", None, request_log, None)
            raise WeChatError(str(exc), code="CONNECTION_ERROR", ambiguous=True, api=api) from exc
        return self._handle(response, api=api, key=key, request_log=request_log)

    def _handle(
        self, response: requests.Response, *, api: str, key: str, request_log: Mapping[str, object]
    ) -> dict[str, Any]:
        raw = response.content
        status = response.status_code
        try:
            data = parse_xml(raw)
        except WeChatXMLError as exc:
            # §5.2 (b): an unparsable answer means "unknown", never "failed".
            self._log(api, key, status, exc.code, None, request_log, None)
            exc.http_status, exc.api = status, api
            raise
        verified: bool | None = None
        if "sign" in data:
            flat = {k: val for k, val in data.items() if isinstance(val, str)}
            verified = v2_verify(flat, self.merchant.api_key)
        self._log(api, key, status, _str(data.get("err_code")), verified, request_log, data)
        if verified is False:
            raise VerificationError(
                "v2 answer sign does not verify", http_status=status, raw_body=raw, api=api
            )
        if data.get("return_code") == "SUCCESS" and data.get("result_code") == "SUCCESS":
            return data
        err_code = _str(data.get("err_code"))
        retryable, ambiguous = classify_v2_code(err_code)
        message = _str(data.get("err_code_des")) or _str(data.get("return_msg")) or "v2 call failed"
        raise WeChatError(
            message,
            code=err_code or _str(data.get("return_code")) or "NO_RESULT",
            http_status=status,
            raw_body=raw,
            retryable=retryable,
            ambiguous=ambiguous,
            api=api,
        )

    def _log(
        self,
        api: str,
        key: str,
        status: int | None,
        code: str | None,
        verified: bool | None,
        request_body: Any,
        response_body: Any,
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
        )


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# --- inbound v2 notifications (§4.3) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class V2Notification:
    """A signature-checked v2 notification; ``succeeded`` is ``result_code == SUCCESS``."""

    fields: dict[str, str]
    succeeded: bool


def parse_v2_notification(body: bytes, api_key: str, *, hook: GatewayHook | None = None) -> V2Notification:
    """Parse and verify a v2 XML notification; raises ``VerificationError`` / ``WeChatXMLError``.

    A ``return_code`` other than SUCCESS carries no signature and is rejected as unverifiable.
    """
    data = parse_xml(body)
    fields = {k: val for k, val in data.items() if isinstance(val, str)}
    if fields.get("return_code") != "SUCCESS":
        raise VerificationError(
            "notification return_code is not SUCCESS", code="RETURN_FAIL", ambiguous=False
        )
    ok = v2_verify(fields, api_key)
    emit(
        hook,
        GatewayEvent(
            direction="inbound",
            api="notification:v2",
            idempotency_key=fields.get("out_trade_no") or fields.get("mch_billno"),
            http_status=None,
            wechat_code=fields.get("err_code"),
            verified=ok,
            body=redact_body(fields),
        ),
    )
    if not ok:
        raise VerificationError(
            "v2 notification sign does not verify", code="SIGNATURE_INVALID", ambiguous=False
        )
    return V2Notification(fields=fields, succeeded=fields.get("result_code") == "SUCCESS")


def v2_reply(success: bool, msg: str = "OK") -> bytes:
    """The XML answer a v2 notification expects (a bare HTTP 200 makes WeChat retry, §3.10)."""
    return to_xml({"return_code": "SUCCESS" if success else "FAIL", "return_msg": msg}).encode("utf-8")


def decrypt_refund_req_info(req_info: str, api_key: str) -> dict[str, Any]:
    """Decrypt a v2 refund notification's ``req_info`` (AES-256-ECB, key = md5(API key) hex, §4.3)."""
    key = hashlib.md5(api_key.encode("utf-8")).hexdigest().encode("ascii")  # noqa: S324 - protocol-defined
    try:
        data = base64.b64decode(req_info, validate=True)
        decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()  # noqa: S305 - protocol-defined
        plain = decryptor.update(data) + decryptor.finalize()
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(
            "req_info is not valid ciphertext", code="DECRYPT_FAILED", ambiguous=False
        ) from exc
    pad = plain[-1] if plain else 0
    if not 1 <= pad <= 16 or plain[-pad:] != bytes([pad]) * pad:
        raise VerificationError(
            "req_info padding is wrong (API key?)", code="DECRYPT_FAILED", ambiguous=False
        )
    return parse_xml(plain[:-pad])
