"""Small builders for rule documents and order facts, with the seed numbers as defaults."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.core.money import Money
from app.rebates.rules import OrderFacts, RedPacketFacts, RuleSet, UserFacts, load_rules

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
BUYER = 7
PLENTY = Money(10**9)


def two_way(**overrides: Any) -> dict[str, Any]:
    """The seed's two-way rule: ≥ ¥200 earns a ¥10 packet; spent on ≥ ¥50, issuer 10 %, buyer 5 %."""
    return {
        "id": "two-way",
        "kind": "two_way",
        "priority": 100,
        "stacking": "combinable",
        "trigger_min_order_fen": 20000,
        "packet_value_fen": 1000,
        "packet_min_spend_fen": 5000,
        "packet_valid_days": 30,
        "issuer_rate_bp": 1000,
        "buyer_rate_bp": 500,
        "max_order_fen": 100000,
    } | overrides


def rule(
    kind: str, rule_id: str, priority: int = 10, stacking: str = "combinable", **fields: Any
) -> dict[str, Any]:
    return {"id": rule_id, "kind": kind, "priority": priority, "stacking": stacking} | fields


def ruleset(*rules: dict[str, Any], caps: dict[str, Any] | None = None) -> RuleSet:
    document: dict[str, Any] = {"rules": list(rules)}
    if caps is not None:
        document["caps"] = caps
    return load_rules(document)


def order(total: int, *, paid: int | None = None, **overrides: Any) -> OrderFacts:
    """A paid order of ``total`` fen; ``paid`` defaults to the total less any red packet's face value."""
    packet: RedPacketFacts | None = overrides.get("red_packet")
    if paid is None:
        paid = total - min(total, packet.face_value.fen) if packet is not None else total
    fields: dict[str, Any] = {
        "order_id": 1,
        "consumer_id": BUYER,
        "total_fen": Money(total),
        "paid_fen": Money(paid),
        "discount_fen": Money(total - paid),
        "paid_at": NOW,
    }
    return OrderFacts(**(fields | overrides))


def packet(**overrides: Any) -> RedPacketFacts:
    """A seed red packet issued by the merchant: ¥10, min spend ¥50, issuer 10 %, buyer 5 %."""
    fields: dict[str, Any] = {
        "id": 3,
        "face_value": Money(1000),
        "issuer": "merchant",
        "issuer_rate_bp": 1000,
        "buyer_rate_bp": 500,
        "min_spend": Money(5000),
        "max_order_fen": Money(100000),
        "rule_id": "two-way",
    }
    return RedPacketFacts(**(fields | overrides))


def nobody() -> UserFacts:
    return UserFacts()
