from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, post_dump, validate

from app.core.fields import REFUND_MAX_FEN, IdField, MoneyField
from app.orders.schemas import OUT_NO


class PayRequestSchema(Schema):
    red_packet_id = IdField(load_default=None)


class PaymentParamsSchema(Schema):
    """Pass these to `wx.requestPayment` as they are."""

    timeStamp = fields.String()
    nonceStr = fields.String()
    package = fields.String()
    signType = fields.String()
    paySign = fields.String()


class SandboxPaymentSchema(Schema):
    """Outside production only: what the WeChat sandbox needs to complete this payment as the consumer
    (there is no ``wx.requestPayment`` in a sandbox). Never present when ``env = "production"``."""

    out_trade_no = fields.String(metadata={"description": "WeChat's order number for this attempt"})
    mchid = fields.String()
    method = fields.String(metadata={"example": "POST"})
    url = fields.String(metadata={"description": "the sandbox admin route that pays the order"})
    body = fields.Dict(keys=fields.String(), values=fields.String())
    curl = fields.String(metadata={"description": "the same call, ready to paste"})


class PaymentSchema(Schema):
    order_id = fields.Integer(attribute="order.id")
    payable_fen = MoneyField(attribute="attempt.amount")
    discount_fen = MoneyField(attribute="attempt.discount")
    red_packet_id = fields.Integer(attribute="attempt.red_packet_id", allow_none=True)
    expires_at = fields.DateTime(attribute="attempt.expires_at")
    payment = fields.Nested(PaymentParamsSchema, attribute="attempt.payment_params")
    sandbox = fields.Nested(
        SandboxPaymentSchema,
        metadata={"description": "outside production only (absent in production): how to pay in the sandbox"},
    )

    @post_dump
    def _no_sandbox_in_production(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if data.get("sandbox") is None:
            data.pop("sandbox", None)
        return data


class RefundRequestSchema(Schema):
    out_refund_no = fields.String(required=True, validate=OUT_NO)
    amount_fen = MoneyField(required=True, minimum=1, maximum=REFUND_MAX_FEN)
    reason = fields.String(load_default=None, validate=validate.Length(max=80))


class RefundSchema(Schema):
    out_refund_no = fields.String()
    amount_fen = MoneyField(attribute="amount")
    reason = fields.String(allow_none=True)
    status = fields.String(attribute="status.value")
    refund_id = fields.String(allow_none=True, metadata={"description": "WeChat's refund id"})
    failure_code = fields.String(allow_none=True)
    succeeded_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class GatewayEventSchema(Schema):
    id = fields.Integer()
    direction = fields.String()
    api = fields.String()
    idempotency_key = fields.String(allow_none=True)
    http_status = fields.Integer(allow_none=True)
    wechat_code = fields.String(allow_none=True)
    verified = fields.Boolean(allow_none=True)
    body = fields.String()
    request_id = fields.String(allow_none=True)
    created_at = fields.DateTime()
