"""The merchant's books on the wire (money in integer fen)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.consumers.models import ConsumerStatus
from app.core.fields import BUDGET_DEPOSIT_MAX_FEN, IdField, MoneyField
from app.orders.models import OrderStatus
from app.orders.schemas import OrderSchema
from app.withdrawals.schemas import WithdrawalSchema

_FEN = {"type": "integer", "format": "int64", "description": "Amount in fen (1 yuan = 100 fen)."}
IDEMPOTENCY_KEY = validate.Regexp(r"^[0-9A-Za-z_\-:.]{1,64}$", error="1-64 letters, digits or _-:.")


class _Strict(Schema):
    class Meta:
        unknown = "raise"


# ---------------------------------------------------------------- money


class CampaignMoneySchema(Schema):
    id = fields.Integer()
    name = fields.String()
    status = fields.String()
    budget_fen = fields.Integer(metadata=_FEN | {"description": "Free budget (ledger: campaign_budget)."})
    reserved_fen = fields.Integer(
        metadata=_FEN | {"description": "Worst case of live red packets (ledger: campaign_reserved)."}
    )
    funded_fen = fields.Integer(metadata=_FEN | {"description": "Net budget transfers into the campaign."})
    spent_fen = fields.Integer(
        metadata=_FEN | {"description": "Face values spent and rebates booked, net of clawbacks (ledger)."}
    )
    skip_stats = fields.Dict(keys=fields.String(), values=fields.Integer())


class MerchantMoneySchema(Schema):
    budget_fen = fields.Integer(
        metadata=_FEN | {"description": "Unallocated marketing budget (ledger: merchant_budget)."}
    )
    rebate_fen = fields.Integer(
        metadata=_FEN
        | {"description": "What the merchant earned as issuer and from red packets spent (merchant_rebate)."}
    )
    rebate_by_reason = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata={
            "description": "rebate_fen by ledger entry reason: red_packet_redeem (face values spent in the "
            "shop), rebate_pending (issuer-leg rebates), clawback (reversed by refunds, negative)."
        },
    )
    campaigns = fields.List(fields.Nested(CampaignMoneySchema))


class DepositRequestSchema(_Strict):
    amount_fen = MoneyField(required=True, minimum=1, maximum=BUDGET_DEPOSIT_MAX_FEN)
    idempotency_key = fields.String(
        required=True,
        validate=IDEMPOTENCY_KEY,
        metadata={"description": "The client's key, e.g. the bank transfer reference: once per merchant."},
    )


class DepositSchema(Schema):
    entry_id = fields.Integer(metadata={"description": "The ledger entry that recorded the deposit."})
    amount_fen = MoneyField(attribute="amount")
    idempotency_key = fields.String()
    replayed = fields.Boolean(metadata={"description": "True when the key was used before: nothing new."})
    budget_fen = MoneyField(attribute="budget", metadata={"description": "The budget balance now."})


# ---------------------------------------------------------------- orders


class OrderQuerySchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=100))
    before = IdField(text=True, load_default=None, metadata={"description": "next_before of the last page"})
    status = fields.Enum(OrderStatus, by_value=True, load_default=None)
    consumer_id = IdField(text=True, load_default=None)


class OrderRowSchema(Schema):
    id = fields.Integer()
    out_order_no = fields.String()
    consumer_id = fields.Integer()
    status = fields.String(attribute="status.value")
    total_fen = MoneyField(attribute="total")
    paid_fen = MoneyField(attribute="paid_amount")
    discount_fen = MoneyField(attribute="discount")
    refunded_fen = MoneyField(attribute="refunded")
    paid_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class OrderPageSchema(Schema):
    orders = fields.List(fields.Nested(OrderRowSchema))
    next_before = fields.Integer(allow_none=True)


class AttemptSchema(Schema):
    id = fields.Integer()
    out_trade_no = fields.String()
    amount_fen = MoneyField(attribute="amount")
    discount_fen = MoneyField(attribute="discount")
    red_packet_id = fields.Integer(allow_none=True)
    status = fields.String(attribute="status.value")
    expires_at = fields.DateTime()
    created_at = fields.DateTime()


class SpentPacketSchema(Schema):
    id = fields.Integer()
    campaign_id = fields.Integer()
    consumer_id = fields.Integer()
    issuer_consumer_id = fields.Integer(allow_none=True)
    face_value_fen = MoneyField(attribute="face_value")
    status = fields.String(attribute="status.value")
    redeemed_at = fields.DateTime(allow_none=True)


class GrantSchema(Schema):
    id = fields.Integer()
    campaign_id = fields.Integer()
    rule_id = fields.String()
    beneficiary = fields.String(
        metadata={"description": "buyer, issuer_merchant, issuer_consumer, … or red_packet_discount"}
    )
    consumer_id = fields.Integer(allow_none=True)
    red_packet_id = fields.Integer(allow_none=True)
    amount_fen = MoneyField(attribute="amount")
    reversed_fen = MoneyField(attribute="reversed")
    status = fields.String(attribute="status.value")
    basis = fields.String()
    created_at = fields.DateTime()


class RefundRowSchema(Schema):
    id = fields.Integer()
    out_refund_no = fields.String()
    amount_fen = MoneyField(attribute="amount")
    status = fields.String(attribute="status.value")
    reason = fields.String(allow_none=True)
    succeeded_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class OrderDetailSchema(Schema):
    order = fields.Nested(OrderSchema)  # the same order the shop API shows
    payment_attempts = fields.List(fields.Nested(AttemptSchema))
    red_packets = fields.List(
        fields.Nested(SpentPacketSchema), metadata={"description": "the red packet spent on this order"}
    )
    grants = fields.List(fields.Nested(GrantSchema))
    refunds = fields.List(fields.Nested(RefundRowSchema))


# ---------------------------------------------------------------- consumers


class ConsumerQuerySchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=100))
    before = IdField(text=True, load_default=None, metadata={"description": "next_before of the last page"})
    q = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "part of a nickname (any case), or an openid"},
    )


class ConsumerRowSchema(Schema):
    id = fields.Integer()
    nickname = fields.String(allow_none=True)
    status = fields.Enum(ConsumerStatus, by_value=True)
    banned_reason = fields.String(allow_none=True)
    created_at = fields.DateTime()


class ConsumerPageSchema(Schema):
    consumers = fields.List(fields.Nested(ConsumerRowSchema))
    next_before = fields.Integer(allow_none=True)


class WalletBucketsSchema(Schema):
    pending_fen = MoneyField(attribute="pending")
    available_fen = MoneyField(attribute="available")
    withdrawing_fen = MoneyField(attribute="withdrawing")
    debt_fen = MoneyField(attribute="debt", metadata={"description": "What the consumer owes (positive)."})


class ConsumerDetailSchema(Schema):
    consumer = fields.Nested(ConsumerRowSchema)
    wallet = fields.Nested(WalletBucketsSchema)
    withdrawals = fields.List(fields.Nested(WithdrawalSchema))
