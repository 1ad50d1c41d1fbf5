"""WeChat Pay coupons beyond the basics in :mod:`wechat.pay_v3`: voucher (代金券, favor) stock control and
callbacks, merchant coupons (商家券, busifavor), and the mini-program ``send-coupon`` plugin's parameters.

Every idempotency key (``out_request_no``, ``use_request_no``, ``return_request_no``,
``deactivate_request_no``) is the caller's, saved before the call and reused on every retry.
Protocol doc §7a (favor); busifavor follows pay.weixin.qq.com/docs/merchant/apis/merchant-exclusive-coupon/.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from wechat.crypto import V2_HMAC, v2_sign
from wechat.errors import WeChatError
from wechat.pay_v3 import PayV3Client
from wechat.v3_http import path_segment

__all__ = [
    "CouponsClient",
    "PluginCoupon",
    "h5_send_url",
    "no_auth",
    "plugin_sign",
    "send_coupon_params",
    "verify_plugin_sign",
]


class CouponsClient:
    """Coupon calls on the transport of a :class:`PayV3Client` (same signing, verification, gateway log)."""

    def __init__(self, pay: PayV3Client) -> None:
        self.pay = pay
        self.mchid = pay.merchant.mchid
        self.transport = pay.transport

    # -- vouchers (favor, §7a) -----------------------------------------------------------------------

    def create_voucher_stock(self, *, out_request_no: str, stock: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /v3/marketing/favor/coupon-stocks`` (§7a.1): ``{"stock_id", "create_time"}``."""
        return self.pay.create_favor_stock(out_request_no=out_request_no, stock=stock)

    def voucher_stock_action(self, stock_id: str, action: str) -> dict[str, Any]:
        """``start`` / ``pause`` / ``restart`` / ``stop`` a voucher stock we created (§7a.2)."""
        if action not in ("start", "pause", "restart", "stop"):
            raise ValueError(f"unknown stock action {action!r}")
        return self.transport.request(
            "POST",
            f"/v3/marketing/favor/stocks/{path_segment(stock_id)}/{action}",
            api=f"favor.{action}_stock",
            idempotency_key=stock_id,
            body={"stock_creator_mchid": self.mchid},
        ).data

    def query_voucher_stock(self, stock_id: str) -> dict[str, Any]:
        """``GET /v3/marketing/favor/stocks/{stock_id}``: its ``status`` and ``stock_use_rule`` (size)."""
        return self.transport.request(
            "GET",
            f"/v3/marketing/favor/stocks/{path_segment(stock_id)}",
            api="favor.query_stock",
            idempotency_key=stock_id,
            query={"stock_creator_mchid": self.mchid},
        ).data

    def send_voucher(self, *, stock_id: str, openid: str, out_request_no: str, appid: str) -> str:
        """Send one voucher into ``openid``'s card pack; its ``coupon_id`` (§7a.3)."""
        return self.pay.send_favor_coupon(
            stock_id=stock_id, openid=openid, out_request_no=out_request_no, appid=appid
        )

    def query_voucher(self, *, coupon_id: str, openid: str, appid: str) -> dict[str, Any]:
        return self.pay.query_favor_coupon(coupon_id=coupon_id, openid=openid, appid=appid)

    def set_voucher_callback(self, notify_url: str) -> dict[str, Any]:
        """Where WeChat posts ``COUPON.USE`` (§7a.5)."""
        return self.transport.request(
            "POST",
            "/v3/marketing/favor/callbacks",
            api="favor.callbacks",
            body={"mchid": self.mchid, "notify_url": notify_url, "switch": True},
        ).data

    # -- merchant coupons (busifavor) ------------------------------------------------------------------

    def create_merchant_coupon_stock(
        self, *, out_request_no: str, stock: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``POST /v3/marketing/busifavor/stocks``: ``{"stock_id", "create_time"}``; ``NO_AUTH`` when the
        account has no merchant coupons (none are granted after 2025-12-15)."""
        body = dict(stock)
        body["out_request_no"] = out_request_no
        body.setdefault("belong_merchant", self.mchid)
        return self.transport.request(
            "POST",
            "/v3/marketing/busifavor/stocks",
            api="busifavor.create_stock",
            idempotency_key=out_request_no,
            body=body,
        ).data

    def use_merchant_coupon(
        self, *, coupon_code: str, stock_id: str, appid: str, openid: str, use_time: str, use_request_no: str
    ) -> dict[str, Any]:
        """``POST /v3/marketing/busifavor/coupons/use`` (核销), idempotent on ``use_request_no``."""
        return self.transport.request(
            "POST",
            "/v3/marketing/busifavor/coupons/use",
            api="busifavor.use",
            idempotency_key=use_request_no,
            body={
                "coupon_code": coupon_code,
                "stock_id": stock_id,
                "appid": appid,
                "use_time": use_time,
                "use_request_no": use_request_no,
                "openid": openid,
            },
        ).data

    def return_merchant_coupon(
        self, *, coupon_code: str, stock_id: str, return_request_no: str
    ) -> dict[str, Any]:
        """``POST /v3/marketing/busifavor/coupons/return`` (退券): a used coupon back to the user."""
        return self.transport.request(
            "POST",
            "/v3/marketing/busifavor/coupons/return",
            api="busifavor.return",
            idempotency_key=return_request_no,
            body={"coupon_code": coupon_code, "stock_id": stock_id, "return_request_no": return_request_no},
        ).data

    def deactivate_merchant_coupon(
        self, *, coupon_code: str, stock_id: str, deactivate_request_no: str, reason: str
    ) -> dict[str, Any]:
        """``POST /v3/marketing/busifavor/coupons/deactivate`` (使券失效)."""
        return self.transport.request(
            "POST",
            "/v3/marketing/busifavor/coupons/deactivate",
            api="busifavor.deactivate",
            idempotency_key=deactivate_request_no,
            body={
                "coupon_code": coupon_code,
                "stock_id": stock_id,
                "deactivate_request_no": deactivate_request_no,
                "deactivate_reason": reason[:150],
            },
        ).data

    def query_merchant_coupon(self, *, coupon_code: str, openid: str, appid: str) -> dict[str, Any]:
        return self.transport.request(
            "GET",
            f"/v3/marketing/busifavor/users/{path_segment(openid)}/coupons/{path_segment(coupon_code)}"
            f"/appids/{path_segment(appid)}",
            api="busifavor.query",
            idempotency_key=coupon_code,
        ).data

    def set_merchant_coupon_callback(self, notify_url: str) -> dict[str, Any]:
        """Where WeChat posts ``COUPON.SEND`` (a user claimed one of our codes)."""
        return self.transport.request(
            "POST",
            "/v3/marketing/busifavor/callbacks",
            api="busifavor.callbacks",
            body={"mchid": self.mchid, "notify_url": notify_url},
        ).data


# -- the mini-program send-coupon plugin ------------------------------------------------------------------


@dataclass(frozen=True)
class PluginCoupon:
    """One coupon of a ``send-coupon`` call: the stock, our request number, our code (merchant coupons)."""

    stock_id: str
    out_request_no: str
    coupon_code: str | None = None


def _flat(coupons: Sequence[PluginCoupon], merchant: str) -> dict[str, str]:
    fields = {"send_coupon_merchant": merchant}
    for i, coupon in enumerate(coupons):
        fields[f"stock_id{i}"] = coupon.stock_id
        fields[f"out_request_no{i}"] = coupon.out_request_no
        if coupon.coupon_code:
            fields[f"coupon_code{i}"] = coupon.coupon_code
    return fields


def plugin_sign(coupons: Sequence[PluginCoupon], merchant: str, v2_key: str) -> str:
    """The plugin's ``sign``: APIv2 HMAC-SHA256 (key = the APIv2 key) over the flattened parameters
    (``stock_id0``, ``out_request_no0``, ``coupon_code0``, …, ``send_coupon_merchant``), sorted (§4.2)."""
    if not coupons:
        raise ValueError("the plugin sends at least one coupon")
    return v2_sign(_flat(coupons, merchant), v2_key, V2_HMAC)


def send_coupon_params(coupons: Sequence[PluginCoupon], merchant: str, v2_key: str) -> dict[str, Any]:
    """What the mini-program passes to ``<send-coupon>``: the list, the merchant and the signature."""
    return {
        "send_coupon_params": [
            {
                k: v
                for k, v in (
                    ("stock_id", c.stock_id),
                    ("out_request_no", c.out_request_no),
                    ("coupon_code", c.coupon_code),
                )
                if v
            }
            for c in coupons
        ],
        "send_coupon_merchant": merchant,
        "sign": plugin_sign(coupons, merchant, v2_key),
    }


H5_SEND_URL = "https://action.weixin.qq.com/busifavor/getcouponinfo"


def h5_send_url(
    *, stock_id: str, out_request_no: str, merchant: str, openid: str, coupon_code: str | None, v2_key: str
) -> str:
    """The H5 issuance link of a merchant coupon (opened in WeChat, e.g. from an official-account page):
    its ``sign`` is the same APIv2 HMAC-SHA256 over ``stock_id``, ``out_request_no``,
    ``send_coupon_merchant``, ``open_id`` and ``coupon_code``."""
    fields = {
        "stock_id": stock_id,
        "out_request_no": out_request_no,
        "send_coupon_merchant": merchant,
        "open_id": openid,
    }
    if coupon_code:
        fields["coupon_code"] = coupon_code
    query = urlencode({**fields, "sign": v2_sign(fields, v2_key, V2_HMAC)})
    return f"{H5_SEND_URL}?{query}#wechat_redirect"


def verify_plugin_sign(params: Mapping[str, Any], v2_key: str) -> bool:
    """True when ``params`` (as :func:`send_coupon_params` makes them) carry a valid signature."""
    try:
        coupons = [
            PluginCoupon(str(c["stock_id"]), str(c["out_request_no"]), c.get("coupon_code"))
            for c in params["send_coupon_params"]
        ]
        expected = plugin_sign(coupons, str(params["send_coupon_merchant"]), v2_key)
    except (KeyError, TypeError, ValueError, AttributeError):
        return False
    return hmac.compare_digest(expected, str(params.get("sign", "")))


def no_auth(exc: WeChatError) -> bool:
    """WeChat's answer that the account lacks a product (``NO_AUTH``; 403 on busifavor)."""
    return (exc.code or "").upper().replace("_", "") == "NOAUTH"
