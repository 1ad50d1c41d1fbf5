from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """A staff member's role at one merchant (platform admins hold every role everywhere)."""

    OWNER = "owner"
    OPERATOR = "operator"  # campaigns
    FINANCE = "finance"  # withdrawals, payouts, reconciliation
    REVIEWER = "reviewer"  # risk queue
    VIEWER = "viewer"


@dataclass(frozen=True)
class ConsumerPrincipal:
    merchant_id: int
    consumer_id: int
    session_id: int
    appid: str = ""  # the merchant's app the request came through (mini-program or official account)


@dataclass(frozen=True)
class StaffPrincipal:
    staff_id: int
    email: str
    is_platform_admin: bool
    roles: dict[int, Role]  # merchant id → role

    def role_at(self, merchant_id: int) -> Role | None:
        if self.is_platform_admin:
            return Role.OWNER
        return self.roles.get(merchant_id)


@dataclass(frozen=True)
class ShopPrincipal:
    merchant_id: int
    key_id: int
