from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from app.core.fields import MoneyField


class CampaignCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    starts_at = fields.AwareDateTime(required=True)
    ends_at = fields.AwareDateTime(required=True)
    rules = fields.Dict(required=True, metadata={"description": "The rule document (see docs/rebates.md)."})


class RulesSchema(Schema):
    rules = fields.Dict(required=True)


class FundSchema(Schema):
    amount_fen = MoneyField(required=True, minimum=1)
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
        **budget,
    }
