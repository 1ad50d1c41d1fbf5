"""marshmallow fields shared by every API schema."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError, fields

from app.core.money import Money


class MoneyField(fields.Field):
    """Money on the wire: a JSON integer of fen (``*_fen`` fields). Floats, bools and strings are refused."""

    def __init__(self, *, minimum: int | None = 0, **kwargs: Any) -> None:
        metadata = {"type": "integer", "format": "int64", "description": "Amount in fen (1 yuan = 100 fen)."}
        kwargs["metadata"] = metadata | kwargs.get("metadata", {})
        super().__init__(**kwargs)
        self.minimum = minimum

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
        return Money(value)
