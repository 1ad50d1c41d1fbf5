from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from app.campaigns.simulation import Tally, ratio, roi
from app.core.fields import BUDGET_DEPOSIT_MAX_FEN, ORDER_MAX_FEN, IdField, MoneyField


class CampaignCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    starts_at = fields.AwareDateTime(required=True)
    ends_at = fields.AwareDateTime(required=True)
    rules = fields.Dict(required=True, metadata={"description": "The rule document (see docs/rebates.md)."})
    pays_out_as_cash = fields.Boolean(
        load_default=False,
        metadata={
            "description": "Pay settled rebates out to WeChat change automatically (a withdrawal each)."
        },
    )


class RulesSchema(Schema):
    rules = fields.Dict(required=True)


class FundSchema(Schema):
    amount_fen = MoneyField(required=True, minimum=1, maximum=BUDGET_DEPOSIT_MAX_FEN)
    source = fields.String(required=True, validate=validate.OneOf(["merchant", "platform"]))
    idempotency_key = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_\-:.]{8,64}$"))


class TransitionSchema(Schema):
    to = fields.String(required=True, validate=validate.OneOf(["active", "paused", "ended"]))


class CampaignSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    status = fields.String(attribute="status.value")
    starts_at = fields.DateTime()
    ends_at = fields.DateTime()
    rules_version = fields.Integer()
    rules = fields.Dict()
    budget_remaining_fen = fields.Integer()
    budget_reserved_fen = fields.Integer()
    skip_stats = fields.Dict()
    pays_out_as_cash = fields.Boolean()


def campaign_view(campaign: Any, version: Any, budget: dict[str, int]) -> dict[str, Any]:
    return {
        "id": campaign.id,
        "name": campaign.name,
        "status": campaign.status,
        "starts_at": campaign.starts_at,
        "ends_at": campaign.ends_at,
        "rules_version": version.version,
        "rules": version.document,
        "skip_stats": campaign.skip_stats or {},
        "pays_out_as_cash": campaign.pays_out_as_cash,
        **budget,
    }


# ---------------------------------------------------------------- preview and replay


class PreviewRedPacketSchema(Schema):
    """The red packet the described order spends; missing fields come from the two-way rule named by
    ``rule_id`` (or the first two-way rule of the rules previewed)."""

    rule_id = fields.String(validate=validate.Length(min=1, max=64))
    face_value_fen = MoneyField(minimum=1)
    min_spend_fen = MoneyField()
    issuer_rate_bp = fields.Integer(strict=True, validate=validate.Range(min=0, max=10_000))
    buyer_rate_bp = fields.Integer(strict=True, validate=validate.Range(min=0, max=10_000))
    max_order_fen = MoneyField(minimum=1)
    issuer_cap_fen = MoneyField(allow_none=True)
    buyer_cap_fen = MoneyField(allow_none=True)


class PreviewOrderSchema(Schema):
    total_fen = MoneyField(required=True, minimum=1, maximum=ORDER_MAX_FEN)
    paid_fen = MoneyField(
        maximum=ORDER_MAX_FEN, metadata={"description": "Default: total less the red packet's face value."}
    )
    red_packet = fields.Nested(PreviewRedPacketSchema)
    is_first_paid_order = fields.Boolean(load_default=False)
    has_inviter = fields.Boolean(load_default=False)
    promoter_levels = fields.Integer(strict=True, load_default=0, validate=validate.OneOf([0, 1, 2]))
    paid_at = fields.AwareDateTime(metadata={"description": "Default: now (decides multiplier windows)."})


class PreviewSchema(Schema):
    order = fields.Nested(PreviewOrderSchema, required=True)
    rules = fields.Dict(metadata={"description": "A draft rule document; default: the current version."})
    budget_fen = MoneyField(metadata={"description": "Default: the campaign's remaining budget."})


class ReplaySchema(Schema):
    days = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=90))
    rules = fields.Dict(metadata={"description": "A draft rule document; default: the current version."})
    budget_fen = MoneyField(
        metadata={"description": "Default: the campaign's remaining plus reserved budget."}
    )


class PreviewLineSchema(Schema):
    kind = fields.String(metadata={"description": "rebate, red_packet_discount or red_packet (issued)."})
    rule_id = fields.String()
    beneficiary = fields.String()
    amount_fen = fields.Integer(metadata={"description": "Booked; for an issued packet its face value."})
    basis = fields.String()
    paid_from = fields.String(metadata={"description": "budget or red_packet_reservation."})
    worst_case_cost_fen = fields.Integer(allow_none=True)
    min_spend_fen = fields.Integer(allow_none=True)
    valid_until = fields.DateTime(allow_none=True)
    issuer_rate_bp = fields.Integer(allow_none=True)
    buyer_rate_bp = fields.Integer(allow_none=True)
    max_order_fen = fields.Integer(allow_none=True)


class SkippedSchema(Schema):
    rule_id = fields.String()
    reason = fields.String()


class PreviewResultSchema(Schema):
    rules_version = fields.Integer(allow_none=True, metadata={"description": "None for a draft."})
    budget_fen = fields.Integer()
    order = fields.Dict()
    grants = fields.List(fields.Nested(PreviewLineSchema))
    skipped = fields.List(fields.Nested(SkippedSchema))
    booked_fen = fields.Integer(metadata={"description": "Discount, legs and rebates booked."})
    reserved_fen = fields.Integer(metadata={"description": "Worst case of the packets issued."})
    total_cost_fen = fields.Integer()


def preview_view(preview: Any) -> dict[str, Any]:
    outcome, order = preview.outcome, preview.order
    grants = []
    for line in outcome.lines:
        packet = line.packet
        grants.append(
            {
                "kind": line.kind,
                "rule_id": line.rule_id,
                "beneficiary": line.beneficiary,
                "amount_fen": line.amount.fen,
                "basis": line.basis,
                "paid_from": line.paid_from,
                "worst_case_cost_fen": packet.worst_case_cost.fen if packet else None,
                "min_spend_fen": packet.min_spend.fen if packet else None,
                "valid_until": packet.valid_until if packet else None,
                "issuer_rate_bp": packet.issuer_rate_bp if packet else None,
                "buyer_rate_bp": packet.buyer_rate_bp if packet else None,
                "max_order_fen": packet.max_order_fen.fen if packet else None,
            }
        )
    return {
        "rules_version": preview.rules_version,
        "budget_fen": preview.budget.fen,
        "order": {
            "total_fen": order.total_fen.fen,
            "paid_fen": order.paid_fen.fen,
            "discount_fen": order.discount_fen.fen,
            "paid_at": order.paid_at.isoformat(),
        },
        "grants": grants,
        "skipped": [{"rule_id": skip.rule_id, "reason": skip.reason.value} for skip in outcome.skipped],
        "booked_fen": outcome.booked.fen,
        "reserved_fen": outcome.reserved.fen,
        "total_cost_fen": (outcome.booked + outcome.reserved).fen,
    }


def tally_view(tally: Tally) -> dict[str, Any]:
    """A tally as JSON: counts, fen, and the redemption rate and ROI as decimal strings."""
    return {
        "orders": tally.orders,
        "grants": tally.grants,
        "booked_fen": tally.booked.fen,
        "reversed_fen": tally.reversed.fen,
        "cost_fen": tally.cost.fen,
        "packets_issued": tally.packets_issued,
        "packets_redeemed": tally.packets_redeemed,
        "worst_case_issued_fen": tally.worst_case_issued.fen,
        "gmv_driven_fen": tally.gmv_driven.fen,
        "redemption_rate": ratio(tally.packets_redeemed, tally.packets_issued),
        "roi": roi(tally.gmv_driven, tally.cost),
    }


class TallySchema(Schema):
    orders = fields.Integer()
    grants = fields.Integer(metadata={"description": "Rebates booked (discounts and legs included)."})
    booked_fen = fields.Integer()
    reversed_fen = fields.Integer(metadata={"description": "Clawed back by refunds."})
    cost_fen = fields.Integer(metadata={"description": "booked_fen − reversed_fen."})
    packets_issued = fields.Integer()
    packets_redeemed = fields.Integer()
    worst_case_issued_fen = fields.Integer()
    gmv_driven_fen = fields.Integer(
        metadata={"description": "Totals of the orders that spent a packet, less their refunds."}
    )
    redemption_rate = fields.String(allow_none=True)
    roi = fields.String(allow_none=True, metadata={"description": "(GMV driven − cost) / cost."})


class SimulatedSchema(TallySchema):
    skipped = fields.Dict(keys=fields.String(), values=fields.Integer())
    packets_expired = fields.Integer()
    packets_live = fields.Integer()
    liability_outstanding_fen = fields.Integer()
    budget_start_fen = fields.Integer()
    budget_end_fen = fields.Integer()


class ReplayDaySchema(Schema):
    date = fields.String()
    simulated = fields.Nested(TallySchema)
    live = fields.Nested(TallySchema)


class ReplayResultSchema(Schema):
    days = fields.Integer()
    since = fields.DateTime()
    until = fields.DateTime()
    rules_version = fields.Integer(allow_none=True)
    orders = fields.Integer()
    order_limit = fields.Integer()
    truncated = fields.Boolean(metadata={"description": "More orders were paid than the limit replays."})
    simulated = fields.Nested(SimulatedSchema)
    live = fields.Nested(TallySchema)
    per_day = fields.List(fields.Nested(ReplayDaySchema))


def replay_view(replayed: Any) -> dict[str, Any]:
    result = replayed.simulated
    days = sorted(set(result.per_day) | set(replayed.live_per_day))
    return {
        "days": replayed.days,
        "since": replayed.since,
        "until": replayed.until,
        "rules_version": replayed.rules_version,
        "orders": result.total.orders,
        "order_limit": replayed.limit,
        "truncated": replayed.truncated,
        "simulated": tally_view(result.total)
        | {
            "skipped": result.skipped,
            "packets_expired": result.packets_expired,
            "packets_live": result.packets_live,
            "liability_outstanding_fen": result.liability_outstanding.fen,
            "budget_start_fen": result.budget_start.fen,
            "budget_end_fen": result.budget_end.fen,
        },
        "live": tally_view(replayed.live),
        "per_day": [
            {
                "date": day.isoformat(),
                "simulated": tally_view(result.per_day.get(day, Tally())),
                "live": tally_view(replayed.live_per_day.get(day, Tally())),
            }
            for day in days
        ],
    }


# ---------------------------------------------------------------- staff-issued red packets and stats


class IssueRedPacketSchema(Schema):
    consumer_id = IdField(required=True)
    rule_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    idempotency_key = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_\-:.]{8,64}$"))


class IssuedRedPacketSchema(Schema):
    id = fields.Integer()
    campaign_id = fields.Integer()
    consumer_id = fields.Integer()
    rule_id = fields.String()
    rule_version_id = fields.Integer()
    status = fields.String(attribute="status.value")
    face_value_fen = MoneyField(attribute="face_value")
    min_spend_fen = MoneyField(attribute="min_spend")
    issuer_rate_bp = fields.Integer()
    buyer_rate_bp = fields.Integer()
    max_order_fen = MoneyField(attribute="max_order")
    reserved_fen = MoneyField(attribute="reserved", metadata={"description": "Worst case still reserved."})
    valid_from = fields.DateTime()
    valid_until = fields.DateTime()


class PacketCountsSchema(Schema):
    issued = fields.Integer(metadata={"description": "Every packet the campaign ever issued."})
    live = fields.Integer(metadata={"description": "Issued or reserved for an unpaid order."})
    redeemed = fields.Integer()
    expired = fields.Integer()
    revoked = fields.Integer()


class CampaignStatsSchema(Schema):
    packets = fields.Nested(PacketCountsSchema)
    budget_remaining_fen = fields.Integer()
    budget_reserved_fen = fields.Integer()
    booked_fen = fields.Integer(metadata={"description": "Every rebate grant, discounts and legs included."})
    reversed_fen = fields.Integer()
    cost_fen = fields.Integer(metadata={"description": "booked_fen − reversed_fen."})
    gmv_driven_fen = fields.Integer(
        metadata={"description": "Totals of the orders that redeemed a packet, less their refunds."}
    )
    redemption_rate = fields.String(allow_none=True, metadata={"description": "redeemed / issued."})
    roi = fields.String(allow_none=True, metadata={"description": "(GMV driven − cost) / cost."})
    skip_stats = fields.Dict(keys=fields.String(), values=fields.Integer())
