"""Consumer bans and the merchant profile on the wire."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.consumers.models import ConsumerStatus
from app.core.fields import MoneyField
from app.merchants.models import PayoutRail


class _Strict(Schema):
    class Meta:
        unknown = "raise"


class BanSchema(_Strict):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=255))


class ConsumerStatusSchema(Schema):
    id = fields.Integer(required=True)
    status = fields.Enum(ConsumerStatus, by_value=True, required=True)
    banned_reason = fields.String(allow_none=True)


class PayoutPolicySchema(_Strict):
    rail = fields.String(validate=validate.OneOf([rail.value for rail in PayoutRail]))
    withdrawal_min_fen = MoneyField()
    withdrawal_fee_bp = fields.Integer(strict=True, validate=validate.Range(0, 5000))
    withdrawal_daily_limit_fen = MoneyField()
    withdrawal_auto_approve_max_fen = MoneyField()


class SettlementPolicySchema(_Strict):
    after_sales_window_days = fields.Integer(strict=True, validate=validate.Range(0, 90))


class MerchantPolicyPatchSchema(_Strict):
    """Only policy: names, WeChat identifiers and secrets are changed by the platform operator (CLI)."""

    payouts = fields.Nested(PayoutPolicySchema)
    settlement = fields.Nested(SettlementPolicySchema)


class MerchantProfileSchema(Schema):
    id = fields.Integer(required=True)
    slug = fields.String(required=True)
    name = fields.String(required=True)
    status = fields.String(required=True)
    mp_appid = fields.String(allow_none=True)
    oa_appid = fields.String(allow_none=True)
    mchid = fields.String(allow_none=True)
    pay_serial_no = fields.String(allow_none=True)
    wechatpay_public_key_id = fields.String(allow_none=True)
    platform_certificates = fields.Integer(
        metadata={"description": "how many platform certificates are stored"}
    )
    payout_rail = fields.String(allow_none=True)
    # merchant_summary already renders money as integer fen.
    withdrawal_min_fen = fields.Integer(allow_none=True)
    withdrawal_fee_bp = fields.Integer()
    withdrawal_daily_limit_fen = fields.Integer(allow_none=True)
    withdrawal_auto_approve_max_fen = fields.Integer(allow_none=True)
    after_sales_window_days = fields.Integer()
    h5_origins = fields.List(fields.String())
    secrets = fields.Dict(
        keys=fields.String(),
        values=fields.Boolean(),
        metadata={"description": "which secrets are configured"},
    )
