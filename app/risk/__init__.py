"""Risk control: one decision point for every claim, reward and withdrawal.

``decide(action, subject, context) -> Decision`` is the entry point (see docs/risk.md). Claim paths call
it and :meth:`Decision.enforce` (429 ``risk_limited`` / 403 ``risk_blocked``); a paid order's booking
calls :func:`judge_paid_order` once (its red packets are not issued when the claim is limited, its
consumer grants are held for review when the reward is held); withdrawals go to manual review when held.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.risk.clients import Client, current_client
from app.risk.engine import (
    ALLOW,
    ClaimPlan,
    Context,
    Decision,
    RiskBlocked,
    RiskLimited,
    Subject,
    conclude_claim,
    decide,
    note_refund,
    note_trail,
    plan_claim,
    remember_order_client,
)
from app.risk.models import Action, Outcome

__all__ = [
    "Action",
    "ClaimPlan",
    "Client",
    "Context",
    "Decision",
    "OrderVerdict",
    "Outcome",
    "RiskBlocked",
    "RiskLimited",
    "Subject",
    "check_claim",
    "conclude_claim",
    "current_client",
    "decide",
    "judge_paid_order",
    "note_refund",
    "note_trail",
    "plan_request_claim",
    "remember_order_client",
    "settle_claim",
]


@dataclass
class OrderVerdict:
    """What a paid order's booking does with the engine's answer."""

    decision: Decision
    merchant_id: int
    consumer_id: int
    order_id: int
    rewarded: bool = True  # the booking credits consumers (what a hold keeps back)

    @property
    def claims_allowed(self) -> bool:
        return self.decision.claims_allowed

    @property
    def held(self) -> bool:
        """The order's consumer grants are held for review (the hold was written with the decision)."""
        return self.rewarded and self.decision.outcome is Outcome.HOLD

    def hold_if_needed(self) -> None:
        """After the booking's write: make sure a held reward's order is held (once per order: a second
        booking of the same order — a used coupon's — joins the hold). The decision's own statement
        wrote the hold already; this only covers a decision written without it."""
        if self.held and self.decision.hold_order_id is None:
            from app.risk.review import hold_order

            hold_order(
                merchant_id=self.merchant_id,
                consumer_id=self.consumer_id,
                order_id=self.order_id,
                decision_id=self.decision.record_id,
                reasons=self.decision.reasons,
            )


def judge_paid_order(
    *,
    merchant_id: int,
    consumer_id: int,
    order_id: int,
    related: set[int],
    claims: int,
    payer: str | None,
    paid_at: datetime | None,
    rewarded: bool = True,
) -> OrderVerdict:
    """The one decision on what a paid order earns: its claims (red packets, coupons) and rewards."""
    decision = decide(
        Action.REWARD,
        Subject(merchant_id, consumer_id),
        Context(
            kind="order",
            order_id=order_id,
            related=tuple(sorted(related)),
            claims=claims,
            payer=payer,
            at=paid_at,
        ),
        hold_order_id=order_id if rewarded else None,
    )
    return OrderVerdict(decision, merchant_id, consumer_id, order_id, rewarded)


def check_claim(*, merchant_id: int, consumer_id: int, kind: str, reference: str | None = None) -> Decision:
    """The claim paths' guard (coupon, red packet), called once the claim is made in the session and
    before it is committed: decide with the request's client, then :func:`settle_claim`."""
    from app.risk import counters

    plan = plan_request_claim(
        merchant_id=merchant_id, consumer_id=consumer_id, kind=kind, reference=reference
    )
    if plan is None:
        return ALLOW
    return settle_claim(conclude_claim(plan, counters.run(plan.steps, plan.now_ms)))


def plan_request_claim(
    *, merchant_id: int, consumer_id: int, kind: str, reference: str | None = None
) -> ClaimPlan | None:
    """A claim by the current request's client, planned for a caller that runs its counters in its own
    Redis script (a pool grab); None when the merchant's engine is off."""
    return plan_claim(
        Subject(merchant_id, consumer_id), Context(kind=kind, reference=reference, client=current_client())
    )


def settle_claim(decision: Decision) -> Decision:
    """A claim's decision made: on a refusal roll the session back, commit the decision alone (so the
    console sees it) and raise it (429 ``risk_limited`` / 403 ``risk_blocked``); an allowed decision is
    added to the session, to commit with the claim. (A pool grab writes an allowed one in its grant's own
    statement, app.risk.records.claim_sql, and calls this for a refusal only.)"""
    from app.core.tx import commit
    from app.extensions import db
    from app.risk.engine import persist

    if decision.refused:
        db.session.rollback()
        persist(decision)
        commit()
        decision.enforce()
    persist(decision)
    return decision
