from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.core.fields import IdField, MoneyField
from app.pools.models import Audience, PoolPayout, SplitKind


class TierSchema(Schema):
    friends = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=1000))
    reward_fen = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=20_000))


class PoolCreateSchema(Schema):
    campaign_id = IdField(required=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    split = fields.String(required=True, validate=validate.OneOf([k.value for k in SplitKind]))
    audience = fields.String(
        load_default=Audience.ALL.value, validate=validate.OneOf([a.value for a in Audience])
    )
    payout = fields.String(
        load_default=PoolPayout.RED_PACKET.value,
        validate=validate.OneOf([p.value for p in PoolPayout]),
        metadata={
            "description": "red_packet (in-app, spendable), cash (WeChat change, on the payout rails) or "
            "fission_cash (one sendgroupredpack per share, split by WeChat among fission_count people; "
            "商家转账 where the merchant's account has no cash red packets)."
        },
    )
    fission_count = fields.Integer(
        load_default=None,
        strict=True,
        metadata={
            "description": "fission_cash only: people a share's group red packet is split among (3-20)."
        },
    )
    total_fen = MoneyField(required=True, minimum=1)
    count = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=10_000))
    starts_at = fields.AwareDateTime(required=True)
    ends_at = fields.AwareDateTime(required=True)
    min_spend_fen = MoneyField(load_default=None, metadata={"description": "The packets' minimum spend."})
    valid_days = fields.Integer(load_default=7, strict=True, validate=validate.Range(min=1, max=90))
    issuer_rate_bp = fields.Integer(load_default=0, strict=True, validate=validate.Range(min=0, max=10_000))
    buyer_rate_bp = fields.Integer(load_default=0, strict=True, validate=validate.Range(min=0, max=10_000))
    max_order_fen = MoneyField(
        load_default=None,
        metadata={"description": "Largest order the rebate legs count (default: min spend)."},
    )
    ladder = fields.List(fields.Nested(TierSchema), load_default=list, validate=validate.Length(max=5))


class PoolSchema(Schema):
    id = fields.Integer()
    campaign_id = fields.Integer()
    name = fields.String()
    status = fields.String(attribute="status.value")
    split = fields.String(attribute="split.value")
    audience = fields.String(attribute="audience.value")
    payout = fields.String(attribute="payout.value")
    fission_count = fields.Integer(allow_none=True)
    total_fen = MoneyField(attribute="total")
    count = fields.Integer()
    starts_at = fields.DateTime()
    ends_at = fields.DateTime()
    min_spend_fen = MoneyField(attribute="min_spend")
    valid_days = fields.Integer()
    issuer_rate_bp = fields.Integer()
    buyer_rate_bp = fields.Integer()
    max_order_fen = MoneyField(attribute="max_order")
    ladder = fields.List(fields.Nested(TierSchema))
    reserved_fen = MoneyField(attribute="reserved")
    released_fen = MoneyField(attribute="released")
    best_grant_id = fields.Integer(allow_none=True)
    opened_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)


class GrabSchema(Schema):
    share_token = fields.String(load_default=None, validate=validate.Length(max=200))


class GrabbedSchema(Schema):
    pool_id = fields.Integer()
    grant_id = fields.Integer()
    amount_fen = MoneyField(attribute="amount")
    red_packet_id = fields.Integer(allow_none=True, metadata={"description": "None for a cash share."})
    share_token = fields.String(metadata={"description": "Friends grabbing with it count for your ladder."})


class ShareOpenSchema(Schema):
    share_token = fields.String(required=True, validate=validate.Length(min=1, max=200))


class MyGrantSchema(Schema):
    amount_fen = MoneyField(attribute="amount")
    red_packet_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()


class ConsumerPoolSchema(Schema):
    id = fields.Integer(attribute="pool.id")
    name = fields.String(attribute="pool.name")
    status = fields.String(attribute="pool.status.value")
    split = fields.String(attribute="pool.split.value")
    total_fen = MoneyField(attribute="pool.total")
    count = fields.Integer(attribute="pool.count")
    ends_at = fields.DateTime(attribute="pool.ends_at")
    shares_left = fields.Integer()
    my_grant = fields.Nested(MyGrantSchema, allow_none=True)
    best_luck = fields.Boolean(
        metadata={"description": "手气最佳: yours was the largest share (once closed)."}
    )
    share_token = fields.String(allow_none=True)
    ladder = fields.List(fields.Nested(TierSchema), attribute="pool.ladder")


class FunnelRowSchema(Schema):
    sharer_id = fields.Integer()
    opens = fields.Integer()
    grabs = fields.Integer()
    tier = fields.Integer()


class PoolStatsSchema(Schema):
    pool_id = fields.Integer()
    status = fields.String()
    count = fields.Integer()
    grabbed = fields.Integer()
    grabbed_fen = fields.Integer()
    unclaimed = fields.Integer()
    unclaimed_fen = fields.Integer()
    best_luck_consumer_id = fields.Integer(allow_none=True)
    best_luck_fen = fields.Integer(allow_none=True)
    redeemed = fields.Integer(metadata={"description": "Grabbed packets spent on a paid order."})
    redemption_rate_bp = fields.Integer()
    gmv_driven_fen = fields.Integer(metadata={"description": "Totals of the orders paid with them."})
    tier_rewards = fields.Integer()
    tier_rewards_fen = fields.Integer()
    funnel = fields.List(fields.Nested(FunnelRowSchema))


class SharesLeftSchema(Schema):
    pool_id = fields.Integer()
    shares_left = fields.Integer()
