"""Pre-splitting a pool's total into its shares: fixed, or 拼手气 (random double mean, 1 fen floor)."""

from __future__ import annotations

import secrets
from collections.abc import Callable

FLOOR_FEN = 1


def split_fixed(total_fen: int, count: int) -> list[int]:
    """``count`` equal shares; the remainder goes one fen at a time to the first shares (sum exact)."""
    _check(total_fen, count)
    base, rest = divmod(total_fen, count)
    return [base + (1 if i < rest else 0) for i in range(count)]


def split_random(
    total_fen: int, count: int, randbelow: Callable[[int], int] = secrets.randbelow
) -> list[int]:
    """WeChat's double-mean split: each share is uniform in [1, 2 × mean of what is left], never leaving
    less than 1 fen for each share still to come; the last share takes the rest. Sum exact, each ≥ 1 fen."""
    _check(total_fen, count)
    left, shares = total_fen, []
    for remaining in range(count, 1, -1):
        ceiling = min(2 * left // remaining, left - FLOOR_FEN * (remaining - 1))
        amount = FLOOR_FEN + randbelow(max(ceiling - FLOOR_FEN, 0) + 1) if ceiling > FLOOR_FEN else FLOOR_FEN
        shares.append(amount)
        left -= amount
    shares.append(left)
    return shares


def _check(total_fen: int, count: int) -> None:
    if count < 1 or total_fen < FLOOR_FEN * count:
        raise ValueError(f"{total_fen} fen cannot make {count} shares of at least {FLOOR_FEN} fen")
