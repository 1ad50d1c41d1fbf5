"""WeChat Pay API v3 client for a direct merchant: payments, refunds, transfers, vouchers, bills.

Every idempotency key (``out_trade_no``, ``out_refund_no``, ``out_bill_no``, ``out_request_no``) is
the caller's, saved before the call and reused on every retry; this client never invents one.
Amounts are integer fen.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from wechat.crypto import aead_decrypt, generate_nonce, request_payment_sign, rsa_oaep_encrypt
from wechat.endpoints import WeChatEndpoints
from wechat.errors import VerificationError, WeChatError
from wechat.gateway_log import GatewayHook
from wechat.notifications import Notification, parse_notification
from wechat.v3_http import MerchantV3Credentials, V3Transport, path_segment
from wechat.verify import PlatformKey, PlatformKeys, certificate_key

__all__ = ["MerchantV3Credentials", "PayV3Client"]


def _fen(name: str, value: int) -> int:
    # Money is integer fen everywhere (§0.4); a float or bool here is a caller bug.
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer number of fen, got {value!r}")
    return value


def _drop_none(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if v is not None}


class PayV3Client:
    """Typed calls on ``/v3/...``; each returns WeChat's verified JSON (dict) unless stated."""

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
        self.hook = hook
        self.transport = V3Transport(merchant, keys, endpoints, session=session, hook=hook)

    # -- JSAPI / mini-program payments (§3.7–§3.9) --------------------------------------------------

    def jsapi_prepay(
        self,
        *,
        appid: str,
        description: str,
        out_trade_no: str,
        notify_url: str,
        amount_total: int,
        payer_openid: str,
        time_expire: str | None = None,
        attach: str | None = None,
        goods_tag: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Create (or, same key + same params, re-fetch) a JSAPI order; returns ``prepay_id``."""
        body: dict[str, Any] = _drop_none(
            {
                "appid": appid,
                "mchid": self.merchant.mchid,
                "description": description,
                "out_trade_no": out_trade_no,
                "time_expire": time_expire,
                "attach": attach,
                "notify_url": notify_url,
                "goods_tag": goods_tag,
                "amount": {"total": _fen("amount_total", amount_total), "currency": "CNY"},
                "payer": {"openid": payer_openid},
            }
        )
        if extra:
            body.update(extra)
        data = self.transport.request(
            "POST",
            "/v3/pay/transactions/jsapi",
            api="pay.jsapi_prepay",
            idempotency_key=out_trade_no,
            body=body,
        ).data
        prepay_id = data.get("prepay_id")
        if not isinstance(prepay_id, str) or not prepay_id:
            raise WeChatError(
                "prepay answer lacks prepay_id", code="UNPARSABLE", ambiguous=True, api="pay.jsapi_prepay"
            )
        return prepay_id

    def request_payment_params(
        self, appid: str, prepay_id: str, *, timestamp: str | None = None, nonce: str | None = None
    ) -> dict[str, str]:
        """Arguments for ``wx.requestPayment`` (and ``appId`` for ``getBrandWCPayRequest``), §3.8.

        ``appid`` must be the one used at prepay.
        """
        ts = timestamp or str(int(dt.datetime.now(tz=dt.UTC).timestamp()))
        nonce_str = nonce or generate_nonce()
        package = f"prepay_id={prepay_id}"
        return {
            "appId": appid,
            "timeStamp": ts,
            "nonceStr": nonce_str,
            "package": package,
            "signType": "RSA",
            "paySign": request_payment_sign(
                self.transport.private_key, appid=appid, timestamp=ts, nonce=nonce_str, package=package
            ),
        }

    def query_order_by_out_trade_no(self, out_trade_no: str) -> dict[str, Any]:
        """Transaction for our ``out_trade_no`` (works also before payment)."""
        return self.transport.request(
            "GET",
            f"/v3/pay/transactions/out-trade-no/{path_segment(out_trade_no)}",
            api="pay.query_order",
            idempotency_key=out_trade_no,
            query={"mchid": self.merchant.mchid},
        ).data

    def query_order_by_transaction_id(self, transaction_id: str) -> dict[str, Any]:
        """Transaction by WeChat's ``transaction_id``."""
        return self.transport.request(
            "GET",
            f"/v3/pay/transactions/id/{path_segment(transaction_id)}",
            api="pay.query_order",
            idempotency_key=transaction_id,
            query={"mchid": self.merchant.mchid},
        ).data

    def close_order(self, out_trade_no: str) -> None:
        """Close an unpaid order (204). A 204 is not proof the order existed (§3.9)."""
        self.transport.request(
            "POST",
            f"/v3/pay/transactions/out-trade-no/{path_segment(out_trade_no)}/close",
            api="pay.close_order",
            idempotency_key=out_trade_no,
            body={"mchid": self.merchant.mchid},
        )

    # -- Refunds (§3.11) ---------------------------------------------------------------------------

    def create_refund(
        self,
        *,
        out_refund_no: str,
        refund: int,
        total: int,
        out_trade_no: str | None = None,
        transaction_id: str | None = None,
        reason: str | None = None,
        notify_url: str | None = None,
        funds_account: str | None = None,
    ) -> dict[str, Any]:
        """Request a refund; the answer means accepted (usually ``PROCESSING``), not refunded."""
        if (out_trade_no is None) == (transaction_id is None):
            raise ValueError("pass exactly one of out_trade_no / transaction_id")
        if _fen("refund", refund) > _fen("total", total):
            raise ValueError("refund exceeds the order total")
        body = _drop_none(
            {
                "transaction_id": transaction_id,
                "out_trade_no": out_trade_no,
                "out_refund_no": out_refund_no,
                "reason": reason,
                "notify_url": notify_url,
                "funds_account": funds_account,
                "amount": {"refund": refund, "total": total, "currency": "CNY"},
            }
        )
        return self.transport.request(
            "POST",
            "/v3/refund/domestic/refunds",
            api="refund.create",
            idempotency_key=out_refund_no,
            body=body,
        ).data

    def query_refund(self, out_refund_no: str) -> dict[str, Any]:
        """Refund object for our ``out_refund_no``."""
        return self.transport.request(
            "GET",
            f"/v3/refund/domestic/refunds/{path_segment(out_refund_no)}",
            api="refund.query",
            idempotency_key=out_refund_no,
        ).data

    # -- Merchant transfer bills (§6.1) --------------------------------------------------------------

    def create_transfer_bill(
        self,
        *,
        appid: str,
        out_bill_no: str,
        transfer_scene_id: str,
        openid: str,
        transfer_amount: int,
        transfer_remark: str,
        transfer_scene_report_infos: Sequence[Mapping[str, str]],
        notify_url: str | None = None,
        user_recv_perception: str | None = None,
        user_name: str | None = None,
    ) -> dict[str, Any]:
        """Start a wallet transfer; ``state`` is usually ``WAIT_USER_CONFIRM`` with ``package_info``."""
        serial: str | None = None
        encrypted_name: str | None = None
        if user_name is not None:
            # The real name travels RSA-OAEP encrypted to the key named in Wechatpay-Serial (§3.5).
            serial = self.keys.preferred_serial()
            key = self.keys.get(serial) if serial else None
            if key is None or serial is None:
                raise WeChatError(
                    "no platform key to encrypt user_name", code="NO_PLATFORM_KEY", api="transfer.create"
                )
            encrypted_name = rsa_oaep_encrypt(key.public_key, user_name)
        body = _drop_none(
            {
                "appid": appid,
                "out_bill_no": out_bill_no,
                "transfer_scene_id": transfer_scene_id,
                "openid": openid,
                "user_name": encrypted_name,
                "transfer_amount": _fen("transfer_amount", transfer_amount),
                "transfer_remark": transfer_remark,
                "notify_url": notify_url,
                "user_recv_perception": user_recv_perception,
                "transfer_scene_report_infos": [dict(item) for item in transfer_scene_report_infos],
            }
        )
        return self.transport.request(
            "POST",
            "/v3/fund-app/mch-transfer/transfer-bills",
            api="transfer.create",
            idempotency_key=out_bill_no,
            body=body,
            wechatpay_serial=serial,
        ).data

    def query_transfer_bill(self, out_bill_no: str) -> dict[str, Any]:
        """Transfer bill by our ``out_bill_no``."""
        return self.transport.request(
            "GET",
            f"/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{path_segment(out_bill_no)}",
            api="transfer.query",
            idempotency_key=out_bill_no,
        ).data

    def query_transfer_bill_by_id(self, transfer_bill_no: str) -> dict[str, Any]:
        """Transfer bill by WeChat's ``transfer_bill_no``."""
        return self.transport.request(
            "GET",
            f"/v3/fund-app/mch-transfer/transfer-bills/transfer-bill-no/{path_segment(transfer_bill_no)}",
            api="transfer.query",
            idempotency_key=transfer_bill_no,
        ).data

    def cancel_transfer_bill(self, out_bill_no: str) -> dict[str, Any]:
        """Ask to cancel a bill the user has not confirmed; success means only "accepted" (§6.1)."""
        return self.transport.request(
            "POST",
            f"/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{path_segment(out_bill_no)}/cancel",
            api="transfer.cancel",
            idempotency_key=out_bill_no,
        ).data

    # -- Vouchers / favor (§7a) ----------------------------------------------------------------------

    def create_favor_stock(self, *, out_request_no: str, stock: Mapping[str, Any]) -> dict[str, Any]:
        """Create a voucher stock from the §7a.1 body (our ``out_request_no`` and mchid are set here)."""
        body = dict(stock)
        body["out_request_no"] = out_request_no
        body.setdefault("belong_merchant", self.merchant.mchid)
        return self.transport.request(
            "POST",
            "/v3/marketing/favor/coupon-stocks",
            api="favor.create_stock",
            idempotency_key=out_request_no,
            body=body,
        ).data

    def start_favor_stock(self, stock_id: str) -> dict[str, Any]:
        """Activate a stock we created."""
        return self.transport.request(
            "POST",
            f"/v3/marketing/favor/stocks/{path_segment(stock_id)}/start",
            api="favor.start_stock",
            idempotency_key=stock_id,
            body={"stock_creator_mchid": self.merchant.mchid},
        ).data

    def send_favor_coupon(
        self,
        *,
        stock_id: str,
        openid: str,
        out_request_no: str,
        appid: str,
        stock_creator_mchid: str | None = None,
    ) -> str:
        """Send one voucher to ``openid``; returns ``coupon_id`` (idempotent on ``out_request_no``)."""
        data = self.transport.request(
            "POST",
            f"/v3/marketing/favor/users/{path_segment(openid)}/coupons",
            api="favor.send_coupon",
            idempotency_key=out_request_no,
            body={
                "stock_id": stock_id,
                "out_request_no": out_request_no,
                "appid": appid,
                "stock_creator_mchid": stock_creator_mchid or self.merchant.mchid,
            },
        ).data
        coupon_id = data.get("coupon_id")
        if not isinstance(coupon_id, str) or not coupon_id:
            raise WeChatError(
                "send-coupon answer lacks coupon_id",
                code="UNPARSABLE",
                ambiguous=True,
                api="favor.send_coupon",
            )
        return coupon_id

    def query_favor_coupon(self, *, coupon_id: str, openid: str, appid: str) -> dict[str, Any]:
        """Voucher detail (``status`` SENDED / USED / EXPIRED)."""
        return self.transport.request(
            "GET",
            f"/v3/marketing/favor/users/{path_segment(openid)}/coupons/{path_segment(coupon_id)}",
            api="favor.query_coupon",
            idempotency_key=coupon_id,
            query={"appid": appid},
        ).data

    # -- Bills (§8) ----------------------------------------------------------------------------------

    def trade_bill(
        self, bill_date: dt.date, *, bill_type: str = "ALL", tar_type: str | None = "GZIP"
    ) -> dict[str, Any]:
        """``{hash_type, hash_value, download_url}`` for one day's trade bill."""
        query: dict[str, str | int] = {"bill_date": bill_date.isoformat(), "bill_type": bill_type}
        if tar_type:
            query["tar_type"] = tar_type
        return self.transport.request("GET", "/v3/bill/tradebill", api="bill.trade", query=query).data

    def download_bill(self, bill: Mapping[str, Any], *, gzipped: bool = True) -> bytes:
        """Fetch the file named by :meth:`trade_bill` and check its SHA1 (files are unsigned, §3.3 rule 4)."""
        url = str(bill["download_url"])
        if not self.transport.same_origin(url):
            # Our Authorization header must only ever go to the configured Pay host.
            raise WeChatError(
                "download_url is not on the Pay host", code="BAD_DOWNLOAD_URL", api="bill.download"
            )
        raw = self.transport.request(
            "GET", "", api="bill.download", absolute_url=url, verify=False, parse_json=False
        ).body
        try:
            content = gzip.decompress(raw) if gzipped else raw
        except (OSError, EOFError) as exc:
            raise WeChatError(
                "bill file is not valid gzip", code="UNPARSABLE", ambiguous=True, api="bill.download"
            ) from exc
        if str(bill.get("hash_type", "SHA1")).upper() != "SHA1":
            raise WeChatError("unsupported bill hash_type", code="UNSUPPORTED_HASH", api="bill.download")
        digest = hashlib.sha1(content).hexdigest()  # noqa: S324 - the protocol's hash (§8)
        if not hmac.compare_digest(digest, str(bill.get("hash_value", "")).lower()):
            raise VerificationError("bill file hash mismatch", code="HASH_MISMATCH", api="bill.download")
        return content

    # -- Platform certificates (§3.6) ----------------------------------------------------------------

    def download_certificates(self) -> list[PlatformKey]:
        """Download, decrypt and authenticate the platform certificates; does not add them to ``keys``.

        The answer is verified with the keys already held or, on first use, with the downloaded
        certificate that signed it (its content is already authenticated by the APIv3-key AEAD).
        """
        response = self.transport.request(
            "GET", "/v3/certificates", api="certificates.download", verify=False
        )
        fresh: list[PlatformKey] = []
        try:
            items = response.data["data"]
            for item in items:
                enc = item["encrypt_certificate"]
                pem = aead_decrypt(
                    self.merchant.apiv3_key,
                    str(enc["nonce"]),
                    str(enc["ciphertext"]),
                    str(enc.get("associated_data") or ""),
                )
                key = certificate_key(pem)
                if key.serial != str(item["serial_no"]).upper():
                    raise VerificationError(
                        "certificate serial does not match serial_no",
                        code="CERT_SERIAL",
                        api="certificates.download",
                    )
                fresh.append(key)
        except (KeyError, TypeError, ValueError) as exc:
            raise WeChatError(
                f"malformed certificates answer: {exc}", code="UNPARSABLE", ambiguous=True
            ) from exc
        checker = PlatformKeys([*self.keys.all_keys(), *fresh], clock=self.keys.clock)
        checker.verify(response.headers, response.body)
        return fresh

    def refresh_certificates(self) -> list[PlatformKey]:
        """Download and add the platform certificates to ``keys``; suitable as its refresh callback."""
        fresh = self.download_certificates()
        for key in fresh:
            self.keys.add(key)
        return fresh

    # -- Notifications (§3.10) -----------------------------------------------------------------------

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify and decrypt a v3 notification from the exact bytes received."""
        return parse_notification(
            headers, body, keys=self.keys, apiv3_key=self.merchant.apiv3_key, hook=self.hook
        )
