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


def set_discount_resolver(app: Flask, resolver: Resolver) -> None:
    app.extensions[_RESOLVER] = resolver


def resolve_discount(order: Order, red_packet_id: int | None) -> Discount:
    if red_packet_id is None:
        return NO_DISCOUNT
    resolver: Resolver | None = current_app.extensions.get(_RESOLVER)
    if resolver is None:
        raise InvalidInput("unknown red packet", details={"fields": {"red_packet_id": ["unknown"]}})
    return resolver(order, red_packet_id)
