from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.behaviour.models import BehaviourKind
from app.core.fields import IdField, MoneyField
from app.coupons.models import Channel, CouponKind, CouponStatus, StockStatus

_CHANNELS = [
    Channel.FOLLOW.value,
    Channel.AFTER_PAYMENT.value,
    Channel.PUSH.value,
    Channel.PLUGIN.value,
    Channel.FIRST_VISIT.value,
    Channel.TASK.value,
]


class TaskSchema(Schema):
    """What earns a coupon of a ``task`` stock: ``count`` behaviour events of ``kind`` in ``within_days``."""

    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in BehaviourKind]))
    count = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=100))
    within_days = fields.Integer(load_default=1, strict=True, validate=validate.Range(min=1, max=7))


class StockCreateSchema(Schema):
    campaign_id = IdField(required=True)
    kind = fields.String(
        load_default=CouponKind.VOUCHER.value, validate=validate.OneOf([k.value for k in CouponKind])
    )
    name = fields.String(required=True, validate=validate.Length(min=1, max=20))
    face_value_fen = MoneyField(
        load_default=None, minimum=1, metadata={"description": "Default: the rule's."}
    )
    min_spend_fen = MoneyField(load_default=None, metadata={"description": "Default: the rule's."})
    valid_from = fields.AwareDateTime(required=True)
    valid_until = fields.AwareDateTime(
        required=True, metadata={"description": "At most 90 days after valid_from."}
    )
    max_coupons = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=1_000_000))
    channels = fields.List(
        fields.String(validate=validate.OneOf(_CHANNELS)), load_default=list, validate=validate.Length(max=4)
    )
    no_cash = fields.Boolean(load_default=False, metadata={"description": "免充值 (true) or 预充值 (false)."})
    rule_id = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=64),
        metadata={
            "description": "A two-way rule of the campaign: its coupons freeze its rates (legs on use)."
        },
    )
    scope = fields.List(fields.String(validate=validate.Length(max=64)), load_default=list)
    activate = fields.Boolean(load_default=True)
    task = fields.Nested(
        TaskSchema, load_default=None, metadata={"description": "Required with the task channel, only then."}
    )

    @validates_schema
    def _task_with_its_channel(self, data: dict[str, Any], **_: Any) -> None:
        if (Channel.TASK.value in data.get("channels", [])) != (data.get("task") is not None):
            raise ValidationError("Required with the task channel, and only then.", "task")


class StockActionSchema(Schema):
    status = fields.String(
        required=True,
        validate=validate.OneOf(
            [StockStatus.RUNNING.value, StockStatus.PAUSED.value, StockStatus.STOPPED.value]
        ),
    )


class StockSchema(Schema):
    id = fields.Integer()
    campaign_id = fields.Integer()
    kind = fields.String(attribute="kind.value")
    name = fields.String()
    status = fields.String(attribute="status.value")
    channels = fields.List(fields.String())
    face_value_fen = MoneyField(attribute="face_value")
    min_spend_fen = MoneyField(attribute="min_spend")
    worst_case_cost_fen = MoneyField(attribute="worst_case_cost")
    valid_from = fields.DateTime()
    valid_until = fields.DateTime()
    max_coupons = fields.Integer(metadata={"description": "Our size."})
    wechat_max_coupons = fields.Integer(allow_none=True, metadata={"description": "WeChat's, when smaller."})
    limit = fields.Integer(metadata={"description": "What issues: the smaller of the two."})
    issued = fields.Integer()
    no_cash = fields.Boolean()
    wechat_stock_id = fields.String(allow_none=True)
    rule_id = fields.String(allow_none=True)
    task = fields.Dict(allow_none=True)
    issuer_rate_bp = fields.Integer()
    buyer_rate_bp = fields.Integer()
    last_error = fields.String(allow_none=True)


class WeChatSizeSchema(Schema):
    wechat_max_coupons = fields.Integer(
        load_default=None,
        strict=True,
        validate=validate.Range(min=0, max=1_000_000),
        metadata={"description": "Omitted: read from WeChat's stock (vouchers)."},
    )


class IssueSchema(Schema):
    consumer_id = IdField(required=True)
    idempotency_key = fields.String(required=True, validate=validate.Length(min=1, max=64))


class CouponQuerySchema(Schema):
    """Finding a stock's coupons: newest first, keyset-paged (pass the last id seen as ``before``)."""

    status = fields.String(load_default=None, validate=validate.OneOf([s.value for s in CouponStatus]))
    consumer_id = IdField(text=True, load_default=None)
    q = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "A coupon number: our id, WeChat's coupon id, our code or out_request_no."},
    )
    before = IdField(text=True, load_default=None)
    limit = fields.Integer(load_default=500, validate=validate.Range(min=1, max=500))


class PushSchema(Schema):
    min_paid_fen = MoneyField(required=True)
    days = fields.Integer(load_default=30, strict=True, validate=validate.Range(min=1, max=365))


class PushResultSchema(Schema):
    segment = fields.Integer()
    issued = fields.Integer()
    refused = fields.Dict(keys=fields.String(), values=fields.String())


class CouponSchema(Schema):
    id = fields.Integer()
    stock_id = fields.Integer()
    kind = fields.String(attribute="kind.value")
    channel = fields.String(attribute="channel.value")
    status = fields.String(attribute="status.value")
    face_value_fen = MoneyField(attribute="face_value")
    min_spend_fen = MoneyField(attribute="min_spend")
    valid_from = fields.DateTime()
    valid_until = fields.DateTime()
    wechat_coupon_id = fields.String(allow_none=True)
    order_id = fields.Integer(allow_none=True)
    discount_fen = MoneyField(attribute="discount", allow_none=True)
    merchant_contribute_fen = MoneyField(attribute="merchant_contribute", allow_none=True)
    wechat_contribute_fen = MoneyField(attribute="wechat_contribute", allow_none=True)
    used_at = fields.DateTime(allow_none=True)


class ConsoleCouponSchema(CouponSchema):
    consumer_id = fields.Integer()
    reserved_fen = MoneyField(attribute="reserved")
    out_request_no = fields.String()
    last_error = fields.String(allow_none=True)


class CapabilitySchema(Schema):
    kind = fields.String()
    enabled = fields.Boolean(allow_none=True, metadata={"description": "null: WeChat was never asked yet."})
    reason = fields.String(allow_none=True)
    wechat_code = fields.String(allow_none=True)
    detected_at = fields.DateTime(allow_none=True)


class ChannelMetricsSchema(Schema):
    channel = fields.String()
    issued = fields.Integer()
    claimed = fields.Integer()
    redeemed = fields.Integer()
    redemption_rate_bp = fields.Integer()
    mean_seconds_to_redeem = fields.Integer(allow_none=True)
    max_seconds_to_redeem = fields.Integer(allow_none=True)
    gmv_fen = fields.Integer()
    cost_fen = fields.Integer()


class StockMetricsSchema(ChannelMetricsSchema):
    stock_id = fields.Integer()
    kind = fields.String()
    name = fields.String()
    status = fields.String()
    limit = fields.Integer()
    max_coupons = fields.Integer()
    wechat_max_coupons = fields.Integer(allow_none=True)
    limit_difference = fields.Integer(
        allow_none=True, metadata={"description": "Ours − WeChat's, when smaller."}
    )
    channels = fields.List(fields.Nested(ChannelMetricsSchema))


class PluginRequestSchema(Schema):
    stock_id = IdField(required=True)
    coupon_id = IdField(
        load_default=None,
        metadata={
            "description": "One of the consumer's own merchant coupons of this stock already reserved for them "
            "(a rule's reward, a buyer's leg, staff): offer that one instead of a new one."
        },
    )


class PluginCouponSchema(Schema):
    stock_id = fields.String()
    out_request_no = fields.String()
    coupon_code = fields.String()


class PluginParamsSchema(Schema):
    coupon_id = fields.Integer()
    send_coupon_params = fields.List(fields.Nested(PluginCouponSchema))
    send_coupon_merchant = fields.String()
    sign = fields.String(metadata={"description": "APIv2 HMAC-SHA256 over the flattened parameters."})
    h5_url = fields.String(
        metadata={"description": "The same coupon by H5 (opened inside WeChat), signed alike."}
    )


class ApplySchema(Schema):
    order_id = IdField(required=True)


class AppliedSchema(Schema):
    coupon_id = fields.Integer()
    order_id = fields.Integer()
    total_fen = fields.Integer()
    discount_fen = fields.Integer()
    payable_fen = fields.Integer()


class RevokeSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=150))


class TaskProgressSchema(Schema):
    stock_id = fields.Integer()
    name = fields.String()
    face_value_fen = MoneyField()
    kind = fields.String()
    count = fields.Integer()
    within_days = fields.Integer()
    done = fields.Integer(metadata={"description": "Events of the kind counted in the window."})
    claimed = fields.Boolean()
