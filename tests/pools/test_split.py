"""The pre-split: every share at least 1 fen, the sum exactly the total, random shares within WeChat's
double-mean bound."""

from __future__ import annotations

import random

import pytest

from app.pools.split import split_fixed, split_random


@pytest.mark.parametrize(("total", "count"), [(100, 100), (10_000, 100), (101, 100), (1, 1), (20_000, 7)])
def test_random_split_is_exact_with_a_1_fen_floor(total: int, count: int) -> None:
    rng = random.Random(total * 31 + count)
    for _ in range(200):
        shares = split_random(total, count, randbelow=rng.randrange)
        assert len(shares) == count
        assert sum(shares) == total
        assert min(shares) >= 1


def test_random_share_never_exceeds_twice_the_mean_of_what_is_left() -> None:
    rng = random.Random(5)
    for _ in range(200):
        shares = split_random(10_000, 50, randbelow=rng.randrange)
        left = 10_000
        for i, share in enumerate(shares[:-1]):
            assert share <= 2 * left // (50 - i)
            left -= share


def test_random_split_varies_and_extremes_are_reachable() -> None:
    assert split_random(200, 2, randbelow=lambda n: 0) == [1, 199]
    assert split_random(200, 2, randbelow=lambda n: n - 1) == [199, 1]
    assert len({tuple(split_random(10_000, 10)) for _ in range(20)}) > 1


def test_fixed_split_spreads_the_remainder_one_fen_at_a_time() -> None:
    assert split_fixed(1000, 4) == [250, 250, 250, 250]
    assert split_fixed(1003, 4) == [251, 251, 251, 250]


@pytest.mark.parametrize(("total", "count"), [(99, 100), (0, 1), (100, 0)])
def test_a_total_below_one_fen_per_share_is_refused(total: int, count: int) -> None:
    with pytest.raises(ValueError, match="at least 1 fen"):
        split_random(total, count)
    with pytest.raises(ValueError, match="at least 1 fen"):
        split_fixed(total, count)
