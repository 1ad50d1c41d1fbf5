"""Typed rule documents and their validation: a campaign's rules as frozen dataclasses.

A rule document is JSON (stored per rule version)::

    {"rules": [{"id": "welcome", "kind": "two_way", "priority": 100, "stacking": "combinable", ...}],
     "caps": {"per_order_fen": 5000, "per_user_day_fen": 10000}}

:func:`load_rules` validates it with marshmallow and returns a :class:`RuleSet`, or raises
:class:`RuleDocumentError` whose ``details["fields"]`` maps dotted paths (``"rules.0.issuer_rate_bp"``)
to messages. Amounts are :class:`~app.core.money.Money` (``*_fen`` in JSON), rates basis points.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from app.core.errors import InvalidInput
from app.core.fields import MoneyField
from app.core.money import BASIS_POINTS_PER_WHOLE, Money

MAX_RULES = 100
MAX_FACTOR_BP = 10 * BASIS_POINTS_PER_WHOLE  # ×10: beyond this a multiplier is a typo, not a promotion
MAX_VALID_DAYS = 366
_PRIORITY = validate.Range(min=-1_000_000, max=1_000_000)
_RATE = validate.Range(min=0, max=BASIS_POINTS_PER_WHOLE, error="Must be 0 to 10000 basis points.")
_RULE_ID = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", error="1-64 letters, digits or _.-")


class RuleDocumentError(InvalidInput):
    """A rule document that does not validate (422); ``details["fields"]`` names every bad field."""


class Stacking(StrEnum):
    EXCLUSIVE = "exclusive"
    COMBINABLE = "combinable"


class Reward(StrEnum):
    """What a two-way rule hands the buyer on the trigger order: an in-app red packet or a WeChat Pay coupon
    of one of the campaign's coupon stocks (its use then drives the legs, like a spent red packet)."""

    RED_PACKET = "red_packet"
    COUPON = "coupon"


class LegPayment(StrEnum):
    """How a two-way rule pays the buyer's leg when its packet is spent: cash into the wallet (pending,
    then available), or one coupon of a stock of the campaign (seed 000: 返利可以是现金……或者优惠券)."""

    CASH = "cash"
    COUPON = "coupon"


class RuleKind(StrEnum):
    TWO_WAY = "two_way"
    RATIO = "ratio"
    LADDER = "ladder"
    FIXED = "fixed"
    CASHBACK = "cashback"
    INVITE = "invite"
    DISTRIBUTION = "distribution"
    MULTIPLIER = "multiplier"


# ---------------------------------------------------------------- the typed documents


@dataclass(frozen=True, slots=True, kw_only=True)
class BaseRule:
    """What every rule has: an id unique in its set, a priority (higher first) and a stacking policy."""

    kind: ClassVar[RuleKind]
    id: str
    priority: int
    stacking: Stacking


@dataclass(frozen=True, slots=True, kw_only=True)
class TwoWayRule(BaseRule):
    """双向返利: an order ≥ trigger earns a red packet; spending it pays the issuer and the buyer a share."""

    kind: ClassVar[RuleKind] = RuleKind.TWO_WAY
    trigger_min_order_fen: Money
    packet_value_fen: Money
    packet_min_spend_fen: Money
    packet_valid_days: int
    issuer_rate_bp: int
    buyer_rate_bp: int
    max_order_fen: Money
    issuer_cap_fen: Money | None = None
    buyer_cap_fen: Money | None = None
    reward: Reward = Reward.RED_PACKET
    coupon_stock_id: int | None = None  # with reward "coupon": the stock (of this campaign) it issues from
    buyer_leg: LegPayment = LegPayment.CASH
    buyer_leg_stock_id: int | None = (
        None  # with buyer_leg "coupon": the stock (of this campaign) it pays from
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RatioRule(BaseRule):
    """比例: ``rate_bp`` of the amount paid, for orders whose total is at least ``min_order_fen``."""

    kind: ClassVar[RuleKind] = RuleKind.RATIO
    rate_bp: int
    min_order_fen: Money = field(default_factory=Money.zero)


@dataclass(frozen=True, slots=True, kw_only=True)
class LadderTier:
    min_order_fen: Money
    rate_bp: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LadderRule(BaseRule):
    """阶梯: the highest tier whose minimum the order total reaches sets the rate on the amount paid."""

    kind: ClassVar[RuleKind] = RuleKind.LADDER
    tiers: tuple[LadderTier, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedRule(BaseRule):
    """固定金额: ``amount_fen`` for an order whose total is at least ``min_order_fen``."""

    kind: ClassVar[RuleKind] = RuleKind.FIXED
    amount_fen: Money
    min_order_fen: Money


@dataclass(frozen=True, slots=True, kw_only=True)
class CashbackRule(BaseRule):
    """返现: ``rate_bp`` of the amount paid, optionally only when the order spent a red packet."""

    kind: ClassVar[RuleKind] = RuleKind.CASHBACK
    rate_bp: int
    requires_red_packet: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class InviteRule(BaseRule):
    """邀请返利: inviter and invitee amounts, paid on the invitee's first paid order only."""

    kind: ClassVar[RuleKind] = RuleKind.INVITE
    inviter_fen: Money
    invitee_fen: Money


@dataclass(frozen=True, slots=True, kw_only=True)
class DistributionRule(BaseRule):
    """分销: commission to the level-1 and level-2 promoters; exactly two fields, never a third level."""

    kind: ClassVar[RuleKind] = RuleKind.DISTRIBUTION
    level1_bp: int
    level2_bp: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MultiplierRule(BaseRule):
    """双倍返利: within [starts_at, ends_at) multiplies the named rules' amounts by ``factor_bp`` / 10 000."""

    kind: ClassVar[RuleKind] = RuleKind.MULTIPLIER
    starts_at: datetime
    ends_at: datetime
    factor_bp: int
    applies_to: tuple[str, ...]

    def active_at(self, moment: datetime) -> bool:
        return self.starts_at <= moment < self.ends_at


@dataclass(frozen=True, slots=True, kw_only=True)
class Caps:
    """Set-level limits on rebates: per order (all beneficiaries) and per buyer per day / ISO week / month."""

    per_order_fen: Money | None = None
    per_user_day_fen: Money | None = None
    per_user_week_fen: Money | None = None
    per_user_month_fen: Money | None = None


Rule = TwoWayRule | RatioRule | LadderRule | FixedRule | CashbackRule | InviteRule | DistributionRule
AnyRule = Rule | MultiplierRule


def priority_order(rule: BaseRule) -> tuple[int, str]:
    """The one evaluation order: higher priority first, then id; total because ids are unique."""
    return (-rule.priority, rule.id)


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A validated set of rules (kept in priority order) and its optional caps."""

    rules: tuple[AnyRule, ...]
    caps: Caps = field(default_factory=Caps)

    def __post_init__(self) -> None:
        ids = [rule.id for rule in self.rules]
        if len(set(ids)) != len(ids):
            raise ValueError("rule ids must be unique in a rule set")
        object.__setattr__(self, "rules", tuple(sorted(self.rules, key=priority_order)))

    def get(self, rule_id: str) -> AnyRule | None:
        return next((rule for rule in self.rules if rule.id == rule_id), None)

    @property
    def granting(self) -> tuple[Rule, ...]:
        """The rules that grant something themselves (every kind but multipliers), in priority order."""
        return tuple(rule for rule in self.rules if not isinstance(rule, MultiplierRule))

    @property
    def multipliers(self) -> tuple[MultiplierRule, ...]:
        return tuple(rule for rule in self.rules if isinstance(rule, MultiplierRule))


# ---------------------------------------------------------------- marshmallow schemas


class _StrictBoolean(fields.Field):
    """A JSON boolean; ``1``, ``"true"`` and friends are refused (they hide mistakes in hand-written docs)."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> bool:
        if type(value) is not bool:
            raise ValidationError("Must be true or false.")
        return value


def _rate(**kwargs: Any) -> fields.Integer:
    return fields.Integer(strict=True, validate=_RATE, **kwargs)


class _RuleSchema(Schema):
    kind_name: ClassVar[RuleKind]
    id = fields.String(required=True, validate=_RULE_ID)
    kind = fields.String(required=True)
    priority = fields.Integer(required=True, strict=True, validate=_PRIORITY)
    stacking = fields.String(required=True, validate=validate.OneOf([s.value for s in Stacking]))

    def _common(self, data: dict[str, Any]) -> dict[str, Any]:
        data.pop("kind")
        data["stacking"] = Stacking(data["stacking"])
        return data


class _TwoWaySchema(_RuleSchema):
    trigger_min_order_fen = MoneyField(required=True, minimum=1)
    packet_value_fen = MoneyField(required=True, minimum=1)
    packet_min_spend_fen = MoneyField(required=True)
    packet_valid_days = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=MAX_VALID_DAYS)
    )
    issuer_rate_bp = _rate(required=True)
    buyer_rate_bp = _rate(required=True)
    max_order_fen = MoneyField(required=True, minimum=1)
    issuer_cap_fen = MoneyField(load_default=None)
    buyer_cap_fen = MoneyField(load_default=None)
    reward = fields.String(
        load_default=Reward.RED_PACKET.value, validate=validate.OneOf([r.value for r in Reward])
    )
    coupon_stock_id = fields.Integer(
        load_default=None, strict=True, validate=validate.Range(min=1, max=2**63 - 1)
    )
    buyer_leg = fields.String(
        load_default=LegPayment.CASH.value, validate=validate.OneOf([p.value for p in LegPayment])
    )
    buyer_leg_stock_id = fields.Integer(
        load_default=None, strict=True, validate=validate.Range(min=1, max=2**63 - 1)
    )

    @validates_schema
    def _max_order_reaches_min_spend(self, data: dict[str, Any], **_: Any) -> None:
        # Below the minimum spend no redemption exists, so such a max_order can only be a mistake.
        if data["max_order_fen"] < data["packet_min_spend_fen"]:
            raise ValidationError("Must be at least packet_min_spend_fen.", "max_order_fen")

    @validates_schema
    def _coupon_names_its_stock(self, data: dict[str, Any], **_: Any) -> None:
        # The stock's own terms (face value, minimum) are checked against the rule when the coupon is issued.
        if data.get("reward") == Reward.COUPON.value and data.get("coupon_stock_id") is None:
            raise ValidationError("Required when reward is coupon.", "coupon_stock_id")
        if data.get("reward") != Reward.COUPON.value and data.get("coupon_stock_id") is not None:
            raise ValidationError("Only with reward coupon.", "coupon_stock_id")
        if data.get("buyer_leg") == LegPayment.COUPON.value and data.get("buyer_leg_stock_id") is None:
            raise ValidationError("Required when buyer_leg is coupon.", "buyer_leg_stock_id")
        if data.get("buyer_leg") != LegPayment.COUPON.value and data.get("buyer_leg_stock_id") is not None:
            raise ValidationError("Only with buyer_leg coupon.", "buyer_leg_stock_id")

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> TwoWayRule:
        data["reward"] = Reward(data["reward"])
        data["buyer_leg"] = LegPayment(data["buyer_leg"])
        return TwoWayRule(**self._common(data))


class _RatioSchema(_RuleSchema):
    rate_bp = _rate(required=True)
    min_order_fen = MoneyField(load_default=Money.zero())

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> RatioRule:
        return RatioRule(**self._common(data))


class _TierSchema(Schema):
    min_order_fen = MoneyField(required=True)
    rate_bp = _rate(required=True)

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> LadderTier:
        return LadderTier(**data)


class _LadderSchema(_RuleSchema):
    tiers = fields.List(fields.Nested(_TierSchema), required=True, validate=validate.Length(min=1, max=20))

    @validates_schema
    def _strictly_increasing(self, data: dict[str, Any], **_: Any) -> None:
        tiers: list[LadderTier] = data["tiers"]
        for index, (lower, upper) in enumerate(itertools.pairwise(tiers), start=1):
            # A ladder pays more for more spend; equal or falling steps are a mistake, not a policy.
            if upper.min_order_fen <= lower.min_order_fen:
                raise ValidationError({"tiers": {index: {"min_order_fen": ["Must exceed the tier before."]}}})
            if upper.rate_bp <= lower.rate_bp:
                raise ValidationError({"tiers": {index: {"rate_bp": ["Must exceed the tier before."]}}})

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> LadderRule:
        data["tiers"] = tuple(data["tiers"])
        return LadderRule(**self._common(data))


class _FixedSchema(_RuleSchema):
    amount_fen = MoneyField(required=True, minimum=1)
    min_order_fen = MoneyField(required=True)

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> FixedRule:
        return FixedRule(**self._common(data))


class _CashbackSchema(_RuleSchema):
    rate_bp = _rate(required=True)
    requires_red_packet = _StrictBoolean(load_default=False)

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> CashbackRule:
        return CashbackRule(**self._common(data))


class _InviteSchema(_RuleSchema):
    inviter_fen = MoneyField(required=True)
    invitee_fen = MoneyField(required=True)

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> InviteRule:
        return InviteRule(**self._common(data))


class _DistributionSchema(_RuleSchema):
    # Two fields and no list: a third level cannot be written down (unknown fields are refused).
    level1_bp = _rate(required=True)
    level2_bp = _rate(required=True)

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> DistributionRule:
        return DistributionRule(**self._common(data))


class _MultiplierSchema(_RuleSchema):
    starts_at = fields.AwareDateTime(required=True, default_timezone=None)
    ends_at = fields.AwareDateTime(required=True, default_timezone=None)
    factor_bp = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=BASIS_POINTS_PER_WHOLE, max=MAX_FACTOR_BP)
    )
    applies_to = fields.List(
        fields.String(validate=_RULE_ID), required=True, validate=validate.Length(min=1, max=MAX_RULES)
    )

    @validates_schema
    def _window(self, data: dict[str, Any], **_: Any) -> None:
        if data["ends_at"] <= data["starts_at"]:
            raise ValidationError("Must be after starts_at.", "ends_at")

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> MultiplierRule:
        data["applies_to"] = tuple(data["applies_to"])
        return MultiplierRule(**self._common(data))


_KIND_SCHEMAS: dict[str, type[_RuleSchema]] = {
    RuleKind.TWO_WAY: _TwoWaySchema,
    RuleKind.RATIO: _RatioSchema,
    RuleKind.LADDER: _LadderSchema,
    RuleKind.FIXED: _FixedSchema,
    RuleKind.CASHBACK: _CashbackSchema,
    RuleKind.INVITE: _InviteSchema,
    RuleKind.DISTRIBUTION: _DistributionSchema,
    RuleKind.MULTIPLIER: _MultiplierSchema,
}


class _RuleField(fields.Field):
    """One rule, dispatched on ``kind`` to its schema; errors come back keyed by field."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> AnyRule:
        if not isinstance(value, Mapping):
            raise ValidationError("Must be an object.")
        kind = value.get("kind")
        schema = _KIND_SCHEMAS.get(kind) if isinstance(kind, str) else None
        if schema is None:
            raise ValidationError({"kind": [f"Must be one of: {', '.join(_KIND_SCHEMAS)}."]})
        rule: AnyRule = schema().load(value)
        return rule


class _CapsSchema(Schema):
    per_order_fen = MoneyField(load_default=None)
    per_user_day_fen = MoneyField(load_default=None)
    per_user_week_fen = MoneyField(load_default=None)
    per_user_month_fen = MoneyField(load_default=None)

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> Caps:
        return Caps(**data)


class _RuleDocumentSchema(Schema):
    rules = fields.List(_RuleField(), required=True, validate=validate.Length(max=MAX_RULES))
    caps = fields.Nested(_CapsSchema, load_default=None)

    @validates_schema
    def _references(self, data: dict[str, Any], **_: Any) -> None:
        rules: list[AnyRule] = data["rules"]
        errors: dict[int, dict[str, Any]] = {}
        seen: set[str] = set()
        for index, rule in enumerate(rules):
            if rule.id in seen:
                errors[index] = {"id": [f"Duplicate rule id {rule.id!r}."]}
            seen.add(rule.id)
        granting = {rule.id for rule in rules if not isinstance(rule, MultiplierRule)}
        for index, rule in enumerate(rules):
            if not isinstance(rule, MultiplierRule):
                continue
            for position, target in enumerate(rule.applies_to):
                if target not in granting:
                    # A multiplier of a missing rule (or of another multiplier) would silently do nothing.
                    message = f"No rule {target!r} that grants anything in this set."
                    errors.setdefault(index, {}).setdefault("applies_to", {})[position] = [message]
        if errors:
            raise ValidationError({"rules": errors})

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> RuleSet:
        return RuleSet(tuple(data["rules"]), data["caps"] or Caps())


def _flatten(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages as ``{"rules.0.issuer_rate_bp": [...]}``: one key per bad field."""
    if isinstance(messages, Mapping):
        flat: dict[str, list[str]] = {}
        for key, value in messages.items():
            # A whole-object message (marshmallow's "_schema") belongs to the object's own path.
            path = (prefix or "_schema") if key == "_schema" else ".".join(filter(None, (prefix, str(key))))
            for flat_key, flat_messages in _flatten(value, path).items():
                flat.setdefault(flat_key, []).extend(flat_messages)
        return flat
    if isinstance(messages, list) and all(isinstance(item, str) for item in messages):
        return {prefix or "_schema": list(messages)}
    return {prefix or "_schema": [str(messages)]}


def load_rules(document: Mapping[str, Any]) -> RuleSet:
    """Validate a rule document and return its typed :class:`RuleSet`; raise :class:`RuleDocumentError`."""
    if not isinstance(document, Mapping):
        raise RuleDocumentError(
            "a rule document must be an object", details={"fields": {"_schema": ["Must be an object."]}}
        )
    try:
        ruleset: RuleSet = _RuleDocumentSchema().load(document)
    except ValidationError as exc:
        flat = _flatten(exc.messages)
        first = next(iter(flat))
        raise RuleDocumentError(
            f"invalid rule document: {first}: {flat[first][0]}", details={"fields": flat}
        ) from exc
    return ruleset


@functools.lru_cache(maxsize=512)
def _stored(canonical: str) -> RuleSet:
    return load_rules(json.loads(canonical))


def stored_rules(document: Mapping[str, Any]) -> RuleSet:
    """The :class:`RuleSet` of a stored rule version, parsed once per process and document.

    Rule versions never change once written and a RuleSet is immutable, so every paid order of a campaign
    can share one; the document's canonical JSON is the key, so two databases (or a rolled-back test)
    reusing a version id can never share a wrong one.
    """
    return _stored(json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
