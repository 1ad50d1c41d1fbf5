from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.core.fields import ORDER_MAX_FEN, IdField, MoneyField

OUT_NO = validate.Regexp(r"^[A-Za-z0-9_\-|*@]{1,64}$", error="1-64 letters, digits or _-|*@")


class OrderItemSchema(Schema):
    sku = fields.String(required=True, validate=validate.Length(min=1, max=64))
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    category = fields.String(load_default=None, validate=validate.Length(max=64))
    quantity = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=100_000))
    unit_price_fen = MoneyField(required=True, maximum=ORDER_MAX_FEN)


class ConsumerRefSchema(Schema):
    """The buyer: a Hongli consumer id, or an openid under the merchant's mini-program / official account."""

    id = IdField(load_default=None)
    openid = fields.String(load_default=None, validate=validate.Length(min=1, max=64))

    @validates_schema
    def _one(self, data: dict[str, Any], **_: Any) -> None:
        if (data.get("id") is None) == (data.get("openid") is None):
            raise ValidationError("give exactly one of id or openid")


class RegisterOrderSchema(Schema):
    out_order_no = fields.String(required=True, validate=OUT_NO)
    consumer = fields.Nested(ConsumerRefSchema, required=True)
    total_fen = MoneyField(required=True, minimum=1, maximum=ORDER_MAX_FEN)
    shipping_fen = MoneyField(load_default=None, maximum=ORDER_MAX_FEN)
    items = fields.List(
        fields.Nested(OrderItemSchema), required=True, validate=validate.Length(min=1, max=200)
    )
    promoter_code = fields.String(load_default=None, validate=validate.Regexp(r"^[A-Za-z0-9]{4,32}$"))

    @validates_schema
    def _total_adds_up(self, data: dict[str, Any], **_: Any) -> None:
        items = sum(item["unit_price_fen"].fen * item["quantity"] for item in data.get("items", []))
        shipping = data["shipping_fen"].fen if data.get("shipping_fen") else 0
        if "total_fen" in data and items + shipping != data["total_fen"].fen:
            raise ValidationError(
                f"total_fen must equal the items ({items}) plus shipping_fen ({shipping})", "total_fen"
            )


class LifecycleEventSchema(Schema):
    type = fields.String(
        required=True,
        validate=validate.OneOf(["shipped", "received", "after_sale_opened", "after_sale_closed"]),
    )
    occurred_at = fields.AwareDateTime(required=True, default_timezone=None)
    after_sale_id = fields.String(load_default=None, validate=validate.Length(min=1, max=64))

    @validates_schema
    def _after_sale_id(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("type", "").startswith("after_sale") and not data.get("after_sale_id"):
            raise ValidationError("after-sale events need after_sale_id", "after_sale_id")


class OrderSchema(Schema):
    id = fields.Integer()
    out_order_no = fields.String()
    consumer_id = fields.Integer()
    status = fields.String(attribute="status.value")
    total_fen = MoneyField(attribute="total")
    shipping_fen = MoneyField(attribute="shipping")
    discount_fen = MoneyField(attribute="discount")
    paid_fen = MoneyField(attribute="paid_amount")
    refunded_fen = MoneyField(attribute="refunded")
    items = fields.List(fields.Dict())
    promoter_code = fields.String(allow_none=True)
    transaction_id = fields.String(allow_none=True)
    paid_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)
    shipped_at = fields.DateTime(allow_none=True)
    received_at = fields.DateTime(allow_none=True)
    open_after_sale_ids = fields.List(fields.String())
    created_at = fields.DateTime()
