"""Money as integer fen, and rates as basis points.

One rounding rule for the whole product: a share of an amount (a rate in basis points, or a
pro-rata part) is rounded **down to the fen** (floor). Shares are only taken of non-negative
amounts, so floor never gives away more than the exact value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

BASIS_POINTS_PER_WHOLE = 10_000
_YUAN = re.compile(r"^-?\d{1,15}(\.\d{1,2})?$")


def _require_int(value: Any, what: str) -> int:
    # bool is a subclass of int and float/Decimal look numeric: all three are refused.
    if type(value) is not int:
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True, order=True)
class Money:
    """An exact CNY amount in fen (1 yuan = 100 fen). Immutable; arithmetic stays in fen."""

    fen: int

    def __post_init__(self) -> None:
        _require_int(self.fen, "Money.fen")

    @classmethod
    def zero(cls) -> Money:
        return cls(0)

    @classmethod
    def from_yuan(cls, text: str) -> Money:
        """Parse a decimal yuan string such as ``"12.34"``; more than two decimals is an error."""
        if not isinstance(text, str) or not _YUAN.match(text):
            raise ValueError(f"not a yuan amount with at most two decimals: {text!r}")
        try:
            return cls(int(Decimal(text) * 100))
        except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid decimals
            raise ValueError(f"not a yuan amount: {text!r}") from exc

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        return Money(self.fen + other.fen)

    def __sub__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        return Money(self.fen - other.fen)

    def __neg__(self) -> Money:
        return Money(-self.fen)

    def __mul__(self, quantity: int) -> Money:
        return Money(self.fen * _require_int(quantity, "quantity"))

    __rmul__ = __mul__

    def __bool__(self) -> bool:
        return self.fen != 0

    @property
    def is_negative(self) -> bool:
        return self.fen < 0

    def apply_rate(self, basis_points: int) -> Money:
        """This amount times ``basis_points`` / 10 000, rounded down to the fen."""
        _require_int(basis_points, "basis_points")
        if basis_points < 0:
            raise ValueError("a rate cannot be negative")
        return Money(self._non_negative_fen() * basis_points // BASIS_POINTS_PER_WHOLE)

    def prorate(self, part: int, whole: int) -> Money:
        """The ``part / whole`` share of this amount, rounded down to the fen (0 <= part <= whole)."""
        _require_int(part, "part")
        _require_int(whole, "whole")
        if whole <= 0 or not 0 <= part <= whole:
            raise ValueError("prorate needs 0 <= part <= whole and whole > 0")
        return Money(self._non_negative_fen() * part // whole)

    def _non_negative_fen(self) -> int:
        if self.fen < 0:
            raise ValueError("shares are only taken of non-negative amounts")
        return self.fen

    def to_yuan(self) -> str:
        """Decimal yuan text, e.g. ``"-12.05"``; for display and WeChat's yuan-denominated fields."""
        sign = "-" if self.fen < 0 else ""
        whole, cents = divmod(abs(self.fen), 100)
        return f"{sign}{whole}.{cents:02d}"

    def __str__(self) -> str:
        return f"¥{self.to_yuan()}"
