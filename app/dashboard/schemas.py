"""The dashboard's query (a China date range) and answer."""

from __future__ import annotations

from marshmallow import Schema, fields


class DashboardQuerySchema(Schema):
    first = fields.Date(
        data_key="from",
        load_default=None,
        metadata={"description": "First China day (default: 29 days before to)."},
    )
    last = fields.Date(
        data_key="to", load_default=None, metadata={"description": "Last China day (default: today)."}
    )


class DashboardSchema(Schema):
    range = fields.Dict()
    balances = fields.Dict(metadata={"description": "The merchant's ledger accounts by kind (fen)."})
    flows = fields.Dict(metadata={"description": "Postings in the range: totals and per China day (fen)."})
    orders = fields.Dict()
    funnel = fields.Dict()
    gmv_driven_fen = fields.Integer()
    rebate_cost_fen = fields.Integer()
    coupon_cost_fen = fields.Integer(
        allow_none=True, metadata={"description": "None until coupons report it."}
    )
    cost_fen = fields.Integer()
    roi = fields.String(allow_none=True)
    claim_rate = fields.String(allow_none=True)
    redemption_rate = fields.String(allow_none=True)
    avg_seconds_to_redeem = fields.Integer(allow_none=True)
    budget_burn = fields.Dict()
    campaigns = fields.List(fields.Dict())
    top_promoters = fields.List(fields.Dict())
