"""Money: integer fen only, exact arithmetic, one floor rounding rule, stored as BIGINT."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError
from sqlalchemy import literal, select
from sqlalchemy.orm import Session

from app.core.db import MoneyType
from app.core.fields import MoneyField
from app.core.money import Money

amounts = st.integers(min_value=0, max_value=10**12)
rates = st.integers(min_value=0, max_value=20_000)


@pytest.mark.parametrize("bad", [1.0, 0.5, True, False, Decimal("1"), "100", None, Fraction(1, 2)])
def test_refuses_anything_but_int(bad: Any) -> None:
    with pytest.raises(TypeError):
        Money(bad)


def test_arithmetic_stays_in_fen() -> None:
    assert Money(150) + Money(50) == Money(200)
    assert Money(150) - Money(200) == Money(-50)
    assert -Money(7) == Money(-7)
    assert Money(125) * 3 == 3 * Money(125) == Money(375)
    assert Money(1) < Money(2)
    assert not Money(0)
    assert Money(-1).is_negative
    with pytest.raises(TypeError):
        Money(100) * 1.5  # type: ignore[operator]
    with pytest.raises(TypeError):
        Money(100) + 1  # type: ignore[operator]


def test_seed_example_rates() -> None:
    """Seed: on a ¥50 second order, the merchant leg is 10% and the buyer leg 5%."""
    order = Money.from_yuan("50")
    assert order.apply_rate(1000) == Money(500)
    assert order.apply_rate(500) == Money(250)
    # Cash-back seed: ¥50 paid at 8% → ¥4.
    assert Money(5000).apply_rate(800) == Money(400)


def test_rates_round_down_to_the_fen() -> None:
    assert Money(999).apply_rate(1000) == Money(99)  # 99.9 fen → 99
    assert Money(1).apply_rate(9999) == Money(0)
    assert Money(333).prorate(1, 3) == Money(111)
    assert Money(100).prorate(2, 3) == Money(66)  # 66.67 → 66


def test_shares_of_negative_amounts_and_negative_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        Money(-100).apply_rate(100)
    with pytest.raises(ValueError, match="negative"):
        Money(100).apply_rate(-1)
    with pytest.raises(ValueError):
        Money(100).prorate(4, 3)
    with pytest.raises(ValueError):
        Money(100).prorate(0, 0)
    with pytest.raises(TypeError):
        Money(100).apply_rate(10.0)  # type: ignore[arg-type]


@given(amounts, rates)
def test_rate_is_the_floor_of_the_exact_value(fen: int, bp: int) -> None:
    share = Money(fen).apply_rate(bp)
    exact = Fraction(fen * bp, 10_000)
    assert share.fen <= exact < share.fen + 1


@given(amounts, st.integers(min_value=1, max_value=10**6), st.data())
def test_prorated_parts_never_exceed_the_whole(fen: int, whole: int, data: st.DataObject) -> None:
    part = data.draw(st.integers(min_value=0, max_value=whole))
    first = Money(fen).prorate(part, whole)
    rest = Money(fen).prorate(whole - part, whole)
    assert first + rest <= Money(fen)
    assert Money(fen) - (first + rest) <= Money(1)


@pytest.mark.parametrize(
    ("text", "fen"), [("0", 0), ("12.34", 1234), ("0.05", 5), ("-3.1", -310), ("200", 20000)]
)
def test_yuan_round_trip(text: str, fen: int) -> None:
    assert Money.from_yuan(text) == Money(fen)
    assert Money.from_yuan(Money(fen).to_yuan()) == Money(fen)


@pytest.mark.parametrize("text", ["1.234", "abc", "", "1e3", "1,00", " 1"])
def test_yuan_parsing_is_strict(text: str) -> None:
    with pytest.raises(ValueError):
        Money.from_yuan(text)


def test_display() -> None:
    assert str(Money(-1205)) == "¥-12.05"
    assert Money(5).to_yuan() == "0.05"


class _AmountSchema(Schema):
    amount_fen = MoneyField(required=True)


@pytest.mark.parametrize("bad", [1.5, 100.0, True, "100", None, -1])
def test_api_field_refuses_non_fen(bad: Any) -> None:
    with pytest.raises(ValidationError) as info:
        _AmountSchema().load({"amount_fen": bad})
    assert "amount_fen" in info.value.messages


def test_api_field_round_trip() -> None:
    loaded = _AmountSchema().load({"amount_fen": 1999})
    assert loaded == {"amount_fen": Money(1999)}
    assert _AmountSchema().dump(loaded) == {"amount_fen": 1999}


def test_column_type_stores_bigint_fen(db_session: Session) -> None:
    big = Money(9_000_000_000_000)  # beyond 32-bit
    assert db_session.execute(select(literal(big, MoneyType()))).scalar_one() == big


def test_column_type_refuses_plain_ints(db_session: Session) -> None:
    with pytest.raises(Exception, match="expected Money"):
        db_session.execute(select(literal(100, MoneyType())))
