"""A merchant's risk policy: the seed numbers as defaults, each overridable per merchant.

Pure: no I/O. The engine reads a :class:`Policy`; the console stores only what differs from the defaults.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Prefix = Annotated[str, StringConstraints(pattern=r"^1[0-9]{1,6}$")]


class Policy(BaseModel):
    """Every limit and signal the engine applies (0 turns a count limit off)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    # Observe (False, a new merchant's start): every decision is made and recorded — the dry run's and the
    # console's material — but nothing is refused or held. Enforce (True) once the dry run looks right.
    enforce: bool = False
    # Claims (red packets, pool grabs, coupons). Seed 000: per IP at most 5 a day, at least 10 minutes apart.
    ip_claims_per_day: int = Field(default=5, ge=0, le=100_000)
    ip_min_interval_seconds: int = Field(default=600, ge=0, le=86_400)
    device_claims_per_day: int = Field(default=5, ge=0, le=100_000)
    user_claims_per_day: int = Field(default=5, ge=0, le=100_000)
    user_claims_per_week: int = Field(default=20, ge=0, le=100_000)
    user_claims_per_month: int = Field(default=60, ge=0, le=100_000)
    # What a farm of accounts on a few phones cannot dodge: claims per linked-account group per day.
    group_claims_per_day: int = Field(default=10, ge=0, le=100_000)
    # A claim without a device id (the mini-program always sends one) is refused when this is on.
    require_device: bool = False
    # New accounts seen on one IP / device within a day: the later ones' rewards are held.
    new_accounts_per_ip_per_day: int = Field(default=3, ge=0, le=100_000)
    new_accounts_per_device_per_day: int = Field(default=2, ge=0, le=100_000)
    # Rewards of a member of a linked group larger than this are held (0: off).
    max_group_size: int = Field(default=3, ge=0, le=100_000)
    # Velocity: paid orders of one consumer per hour above this are held.
    orders_per_user_per_hour: int = Field(default=5, ge=0, le=100_000)
    # Fake-order trail: an order with no browse/cart event in this window before it is held (0: off).
    trail_window_minutes: int = Field(default=1440, ge=0, le=7 * 1440)
    # Buy-redeem-refund loops: refunds of a consumer within 30 days at or above this are held (0: off).
    refunds_per_month: int = Field(default=2, ge=0, le=1000)
    # Phones in virtual-operator number segments (虚拟运营商号段) are held.
    virtual_prefixes: tuple[Prefix, ...] = Field(
        default=("162", "165", "167", "170", "171", "192"), max_length=50
    )
    # Which shared identifiers join accounts into groups. An IP is not one by default: carrier NAT and
    # shop Wi-Fi put strangers behind one address (IPs still count claims and new accounts above).
    link_by: tuple[Literal["device", "ip", "payer", "phone"], ...] = ("device", "payer", "phone")
    # Withdrawals of a consumer with a reward under review are held for manual review.
    hold_withdrawals_under_review: bool = True


DEFAULT = Policy()


def policy_from(stored: dict[str, Any] | None) -> Policy:
    """The policy of stored overrides (defaults for everything missing)."""
    return Policy.model_validate(stored or {})


def overrides(policy: Policy) -> dict[str, Any]:
    """Only what differs from the defaults (what is stored)."""
    data = policy.model_dump(mode="json")
    defaults = DEFAULT.model_dump(mode="json")
    return {key: value for key, value in data.items() if defaults.get(key) != value}
