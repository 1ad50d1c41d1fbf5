"""The seam through which an in-app red packet lowers what a consumer pays.

Red packets belong to the rebate engine; until it provides a resolver, any red packet is unknown.
A resolver decides the discount and reserves the packet for the order (inside the pay transaction).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, current_app

from app.core.errors import InvalidInput
from app.core.money import Money
from app.orders.models import Order

_RESOLVER = "hongli.discount_resolver"


@dataclass(frozen=True)
class Discount:
    amount: Money
    red_packet_id: int | None


NO_DISCOUNT = Discount(Money(0), None)
Resolver = Callable[[Order, int], Discount]
Releaser = Callable[[int, int | None], int]
_RELEASER = "hongli.discount_releaser"
_HELD = "hongli.held_discount"  # a merchant coupon (app.coupons) applied to the order beforehand


def set_discount_resolver(app: Flask, resolver: Resolver, releaser: Releaser) -> None:
    """``resolver`` reserves a packet for an order; ``releaser(order_id, packet_id)`` gives it back."""
    app.extensions[_RESOLVER] = resolver
    app.extensions[_RELEASER] = releaser


def set_held_discount(app: Flask, finder: Callable[[Order], Discount | None]) -> None:
    """``finder(order)``: the discount of a coupon held for the order when no red packet is named."""
    app.extensions[_HELD] = finder


def release_discount(order_id: int, red_packet_id: int | None) -> None:
    """Give back a packet reserved for an order whose payment terms changed."""
    releaser: Releaser | None = current_app.extensions.get(_RELEASER)
    if red_packet_id is not None and releaser is not None:
        releaser(order_id, red_packet_id)


def resolve_discount(order: Order, red_packet_id: int | None) -> Discount:
    if red_packet_id is None:
        finder: Callable[[Order], Discount | None] | None = current_app.extensions.get(_HELD)
        return (finder(order) if finder is not None else None) or NO_DISCOUNT
    resolver: Resolver | None = current_app.extensions.get(_RESOLVER)
    if resolver is None:
        raise InvalidInput("unknown red packet", details={"fields": {"red_packet_id": ["unknown"]}})
    return resolver(order, red_packet_id)
