"""marshmallow fields shared by every API schema."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError, fields, validate

from app.core.inputs import ID_MAX
from app.core.money import Money

# Ceilings of money on the way in, in fen. All are far below 2**53 (9.007e15), so every client
# language (a JavaScript number included) reads any figure built from them exactly.
#: An order's total, shipping and one item's unit price; a payment of one (¥10,000,000).
ORDER_MAX_FEN = 1_000_000_000
#: One refund: never more than an order (¥10,000,000).
REFUND_MAX_FEN = ORDER_MAX_FEN
#: One deposit into a campaign's budget (¥100,000,000).
BUDGET_DEPOSIT_MAX_FEN = 10_000_000_000
#: Any other amount a client sends: rule amounts, caps, policy limits, withdrawals (¥100,000,000).
MONEY_MAX_FEN = 10_000_000_000
_ASCII_DIGITS = re.compile(r"^[0-9]{1,19}$")


class MoneyField(fields.Field):
    """Money on the wire: a JSON integer of fen (``*_fen`` fields). Floats, bools and strings are refused."""

    def __init__(self, *, minimum: int | None = 0, maximum: int = MONEY_MAX_FEN, **kwargs: Any) -> None:
        metadata: dict[str, Any] = {
            "type": "integer",
            "format": "int64",
            "description": "Amount in fen (1 yuan = 100 fen).",
            "maximum": maximum,
        }
        if minimum is not None:
            metadata["minimum"] = minimum
        kwargs["metadata"] = metadata | kwargs.get("metadata", {})
        super().__init__(**kwargs)
        self.minimum = minimum
        self.maximum = maximum

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> int | None:
        if value is None:
            return None
        if not isinstance(value, Money):
            raise TypeError(f"{attr}: expected Money, got {type(value).__name__}")
        return value.fen

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Money:
        if type(value) is not int:
            raise ValidationError("Must be an integer number of fen.")
        if self.minimum is not None and value < self.minimum:
            raise ValidationError(f"Must be at least {self.minimum} fen.")
        if value > self.maximum or (self.minimum is None and value < -self.maximum):
            raise ValidationError(f"Must be at most {self.maximum} fen.")
        return Money(value)


class IdField(fields.Integer):
    """An id (or other positive count) on the way in: 1 to :data:`~app.core.inputs.ID_MAX`.

    In a JSON body a JSON integer (``strict``); in a query string (``text=True``) 1-19 ASCII digits —
    ``²`` or ``١`` are refused, not read as numbers.
    """

    def __init__(self, *, text: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("validate", validate.Range(min=1, max=ID_MAX))
        kwargs.setdefault("strict", not text)
        kwargs["metadata"] = {"format": "int64"} | kwargs.get("metadata", {})
        super().__init__(**kwargs)
        self.text = text

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> int:
        if isinstance(value, bool) or (
            isinstance(value, str) and not (self.text and _ASCII_DIGITS.match(value))
        ):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)
