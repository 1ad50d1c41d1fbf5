"""The campaign rule builder's form ↔ the rule document (docs/rebates.md §1).

The page shows yuan and percentages; this module turns them into fen and basis points with
:class:`Money` (never floats), and back for editing. Validation stays with the rule document's own loader
(:func:`app.campaigns.service.validated_rules`): this only reshapes fields, so a bad value is reported by
its dotted path exactly as the JSON API reports it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from werkzeug.datastructures import MultiDict

from app.core.errors import InvalidInput
from app.core.money import Money

BEIJING_SUFFIX = "+08:00"


@dataclass(frozen=True)
class Field:
    name: str  # the document's key
    unit: str  # fen (shown in yuan), bp (shown in %), int, bool, time, ids, tiers, factor
    required: bool = True
    label: str = ""


def _f(name: str, unit: str, label: str, required: bool = True) -> Field:
    return Field(name, unit, required, label)


KIND_FIELDS: dict[str, tuple[Field, ...]] = {
    "two_way": (
        _f("trigger_min_order_fen", "fen", "Order total that earns a red packet"),
        _f("packet_value_fen", "fen", "Red packet value"),
        _f("packet_min_spend_fen", "fen", "Minimum spend to use it"),
        _f("packet_valid_days", "int", "Valid for days"),
        _f("issuer_rate_bp", "bp", "Issuer rebate rate"),
        _f("buyer_rate_bp", "bp", "Buyer rebate rate"),
        _f("max_order_fen", "fen", "Counted up to (order total)"),
        _f("issuer_cap_fen", "fen", "Issuer rebate cap", required=False),
        _f("buyer_cap_fen", "fen", "Buyer rebate cap", required=False),
        # An id here pays in a coupon of that stock (the document's reward / buyer_leg "coupon").
        _f("coupon_stock_id", "int", "Red packet paid as a coupon of stock (id)", required=False),
        _f("buyer_leg_stock_id", "int", "Buyer's rebate paid as a coupon of stock (id)", required=False),
    ),
    "ratio": (
        _f("rate_bp", "bp", "Rate of the amount paid"),
        _f("min_order_fen", "fen", "Minimum order total", False),
    ),
    "ladder": (_f("tiers", "tiers", "Tiers (minimum total in yuan : rate in %, comma separated)"),),
    "fixed": (_f("amount_fen", "fen", "Amount"), _f("min_order_fen", "fen", "Minimum order total")),
    "cashback": (
        _f("rate_bp", "bp", "Rate of the amount paid"),
        _f("requires_red_packet", "bool", "Only when a red packet was spent", False),
    ),
    "invite": (_f("inviter_fen", "fen", "Inviter reward"), _f("invitee_fen", "fen", "Invitee reward")),
    "distribution": (
        _f("level1_bp", "bp", "Level-1 promoter commission"),
        _f("level2_bp", "bp", "Level-2 promoter commission"),
    ),
    "multiplier": (
        _f("starts_at", "time", "From (Beijing time)"),
        _f("ends_at", "time", "Until (Beijing time)"),
        _f("factor_bp", "factor", "Multiply by (×)"),
        _f("applies_to", "ids", "Rules it multiplies (ids, comma separated)"),
    ),
}
CAPS = (
    _f("per_order_fen", "fen", "Per order", False),
    _f("per_user_day_fen", "fen", "Per buyer per day", False),
    _f("per_user_week_fen", "fen", "Per buyer per week", False),
    _f("per_user_month_fen", "fen", "Per buyer per month", False),
)
_INDEX = re.compile(r"^rules-(\d{1,3})-kind$")


def _bad(path: str, problem: str) -> InvalidInput:
    return InvalidInput("invalid rules", details={"fields": {path: [problem]}})


def _yuan(text: str, path: str) -> int:
    try:
        return Money.from_yuan(text.replace(",", "")).fen
    except ValueError:
        raise _bad(path, "yuan, at most two decimals") from None


def _percent(text: str, path: str, scale: int = 100) -> int:
    """``"10"`` or ``"10.5"`` % → basis points (``scale`` 100), or ×2 → 20000 (``scale`` 10000); exact."""
    try:
        value = Decimal(text) * scale
    except InvalidOperation:
        raise _bad(path, "a number") from None
    if value != value.to_integral_value():
        raise _bad(path, "too many decimals")
    return int(value)


def _value(field: Field, text: str, path: str) -> Any:
    if field.unit == "fen":
        return _yuan(text, path)
    if field.unit == "bp":
        return _percent(text, path)
    if field.unit == "factor":
        return _percent(text, path, scale=10_000)
    if field.unit == "int":
        if not re.fullmatch(r"-?\d{1,9}", text):
            raise _bad(path, "a whole number")
        return int(text)
    if field.unit == "time":
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise _bad(path, "YYYY-MM-DDTHH:MM") from None
        return moment.isoformat() + ("" if moment.tzinfo else BEIJING_SUFFIX)
    if field.unit == "ids":
        return [part.strip() for part in text.split(",") if part.strip()]
    if field.unit == "tiers":
        tiers = []
        for n, pair in enumerate(p for p in text.split(",") if p.strip()):
            minimum, _, rate = pair.partition(":")
            tiers.append(
                {
                    "min_order_fen": _yuan(minimum.strip(), f"{path}.{n}.min_order_fen"),
                    "rate_bp": _percent(rate.strip(), f"{path}.{n}.rate_bp"),
                }
            )
        return tiers
    raise AssertionError(field.unit)


def document_from_form(form: MultiDict[str, str]) -> dict[str, Any]:
    """The rule document the builder's fields describe (rules in the order shown)."""
    indexes = sorted(int(m.group(1)) for key in form if (m := _INDEX.match(key)))
    rules = []
    for n, index in enumerate(indexes):
        prefix = f"rules-{index}-"
        kind = form.get(prefix + "kind", "")
        if kind not in KIND_FIELDS:
            raise _bad(f"rules.{n}.kind", "unknown kind")
        priority = form.get(prefix + "priority", "0").strip() or "0"
        if not re.fullmatch(r"-?\d{1,7}", priority):
            raise _bad(f"rules.{n}.priority", "a whole number")
        rule: dict[str, Any] = {
            "id": form.get(prefix + "id", "").strip(),
            "kind": kind,
            "priority": int(priority),
            "stacking": form.get(prefix + "stacking", "combinable"),
        }
        for field in KIND_FIELDS[kind]:
            if field.unit == "bool":
                rule[field.name] = form.get(prefix + field.name) == "on"
                continue
            text = form.get(prefix + field.name, "").strip()
            if not text:
                if field.required:
                    raise _bad(f"rules.{n}.{field.name}", "required")
                continue
            rule[field.name] = _value(field, text, f"rules.{n}.{field.name}")
        if "coupon_stock_id" in rule:
            rule["reward"] = "coupon"
        if "buyer_leg_stock_id" in rule:
            rule["buyer_leg"] = "coupon"
        rules.append(rule)
    document: dict[str, Any] = {"rules": rules}
    caps = {}
    for field in CAPS:
        text = form.get("caps-" + field.name, "").strip()
        if text:
            caps[field.name] = _yuan(text, f"caps.{field.name}")
    if caps:
        document["caps"] = caps
    return document


def _shown(field: Field, value: Any) -> str:
    if value is None:
        return ""
    if field.unit == "fen":
        return Money(int(value)).to_yuan()
    if field.unit == "bp":
        return str(Decimal(int(value)) / 100)
    if field.unit == "factor":
        return str(Decimal(int(value)) / 10_000)
    if field.unit == "time":
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%dT%H:%M")
    if field.unit == "ids":
        return ", ".join(value)
    if field.unit == "tiers":
        return ", ".join(
            f"{Money(int(t['min_order_fen'])).to_yuan()}:{Decimal(int(t['rate_bp'])) / 100}" for t in value
        )
    return str(value)


def form_values(document: dict[str, Any]) -> dict[str, Any]:
    """A document as the builder shows it: per rule its common fields and its kind's fields as text."""
    rules = []
    for rule in document.get("rules", []):
        kind = rule.get("kind", "")
        values = {
            f.name: (rule.get(f.name) is True) if f.unit == "bool" else _shown(f, rule.get(f.name))
            for f in KIND_FIELDS.get(kind, ())
        }
        rules.append(
            {
                "id": rule.get("id", ""),
                "kind": kind,
                "priority": rule.get("priority", 0),
                "stacking": rule.get("stacking", "combinable"),
                "values": values,
            }
        )
    caps = {f.name: _shown(f, document.get("caps", {}).get(f.name)) for f in CAPS}
    return {"rules": rules, "caps": caps}


SEED_DOCUMENT: dict[str, Any] = {
    "rules": [
        {
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
        }
    ],
    "caps": {"per_order_fen": 5000, "per_user_day_fen": 10000},
}
