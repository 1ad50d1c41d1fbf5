"""Pools over HTTP: the console creates, opens, closes and reads pools; the mini-program grabs.

Console roles as for campaigns: any role reads; an operator (or the owner) creates, opens and closes.
"""

from __future__ import annotations

from typing import Any

from app.auth.guards import (
    consumer_required,
    current_actor,
    current_consumer,
    current_merchant_id,
    current_staff,
    staff_required,
)
from app.auth.principals import Role
from app.core.api import Blueprint
from app.core.money import Money
from app.core.tx import commit, statements_commit_alone
from app.pools import service, stats
from app.pools.models import Audience, Pool, PoolPayout, SplitKind
from app.pools.schemas import (
    ConsumerPoolSchema,
    GrabbedSchema,
    GrabSchema,
    PoolCreateSchema,
    PoolSchema,
    PoolStatsSchema,
    ShareOpenSchema,
    SharesLeftSchema,
)

console = Blueprint(
    "console_pools",
    __name__,
    url_prefix="/api/console/v1",
    description="Red-packet pools consumers grab (拼手气 / fixed split) and their fission ladders.",
)
mp = Blueprint("mp_pools", __name__, url_prefix="/api/mp/v1", description="Grabbing red-packet pools.")


@console.route("/pools")
@staff_required()
@console.response(200, PoolSchema(many=True))
def pools() -> list[Pool]:
    """Every pool of the merchant. Any role."""
    return service.list_pools(merchant_id=current_merchant_id())


@console.route("/pools", methods=["POST"])
@staff_required(Role.OPERATOR)
@console.arguments(PoolCreateSchema)
@console.response(201, PoolSchema)
def create(body: dict[str, Any]) -> tuple[Pool, int]:
    """A draft pool of a campaign: ``count`` shares of ``total_fen`` (fixed, or random with a 1 fen floor),
    each an in-app red packet. Nothing is reserved until it opens. Operator or owner."""
    pool = service.create_pool(
        merchant_id=current_merchant_id(),
        campaign_id=body["campaign_id"],
        name=body["name"],
        split=SplitKind(body["split"]),
        audience=Audience(body["audience"]),
        payout=PoolPayout(body["payout"]),
        fission_count=body["fission_count"],
        total=body["total_fen"],
        count=body["count"],
        starts_at=body["starts_at"],
        ends_at=body["ends_at"],
        min_spend=body["min_spend_fen"] or Money(0),
        valid_days=body["valid_days"],
        issuer_rate_bp=body["issuer_rate_bp"],
        buyer_rate_bp=body["buyer_rate_bp"],
        max_order=body["max_order_fen"],
        ladder=body["ladder"],
        actor=current_actor(),
        staff_id=current_staff().staff_id,
    )
    commit()
    return pool, 201


@console.route("/pools/<int:pool_id>")
@staff_required()
@console.response(200, PoolSchema)
def pool(pool_id: int) -> Pool:
    """One pool. Any role."""
    return service.get_pool(merchant_id=current_merchant_id(), pool_id=pool_id)


@console.route("/pools/<int:pool_id>/open", methods=["POST"])
@staff_required(Role.OPERATOR)
@console.response(200, PoolSchema)
def open_(pool_id: int) -> Pool:
    """Split the pool and reserve its whole worst case from the campaign budget (409
    ``insufficient_funds`` if it does not fit). Operator or owner."""
    opened = service.open_pool(merchant_id=current_merchant_id(), pool_id=pool_id, actor=current_actor())
    commit()
    return opened


@console.route("/pools/<int:pool_id>/close", methods=["POST"])
@staff_required(Role.OPERATOR)
@console.response(200, PoolSchema)
def close(pool_id: int) -> Pool:
    """Close the pool now: unclaimed shares go back to the campaign budget; best luck is marked."""
    closed = service.close_pool(merchant_id=current_merchant_id(), pool_id=pool_id, actor=current_actor())
    commit()
    return closed


@console.route("/pools/<int:pool_id>/stats")
@staff_required()
@console.response(200, PoolStatsSchema)
def pool_stats(pool_id: int) -> dict[str, Any]:
    """Grabbed, amount, best luck, unclaimed, redemption of grabbed packets, GMV driven, share funnel."""
    return stats.pool_stats(merchant_id=current_merchant_id(), pool_id=pool_id)


# ---------------------------------------------------------------- mini-program


@mp.route("/pools/<int:pool_id>")
@consumer_required
@mp.response(200, ConsumerPoolSchema)
def show(pool_id: int) -> dict[str, Any]:
    """The pool as the consumer sees it: shares left, their own grab, best luck, their share token."""
    principal = current_consumer()
    return service.consumer_view(
        merchant_id=principal.merchant_id, pool_id=pool_id, consumer_id=principal.consumer_id
    )


@mp.route("/pools/<int:pool_id>/left")
@consumer_required
@mp.response(200, SharesLeftSchema)
def left(pool_id: int) -> dict[str, int]:
    """The live counter (shares still to grab), read from Redis: a page may poll it during a rush.
    (Another merchant's pool answers from Redis only what its id says: a count, nothing else.)"""
    return service.shares_left(merchant_id=current_consumer().merchant_id, pool_id=pool_id)


@mp.route("/pools/<int:pool_id>/grab", methods=["POST"])
@statements_commit_alone
@consumer_required
@mp.arguments(GrabSchema)
@mp.response(201, GrabbedSchema)
def grab(body: dict[str, Any], pool_id: int) -> tuple[service.GrabResult, int]:
    """Grab one share (once per consumer). The answer is final: the grant and its red packet are
    committed before it. ``share_token``: the friend's link it came through (fission). Refusals:
    ``pool_closed``, ``pool_empty``, ``already_grabbed``, ``not_eligible``, ``pool_not_found``;
    503 ``redis_unavailable`` (nothing taken; try again)."""
    principal = current_consumer()
    result = service.grab(
        merchant_id=principal.merchant_id,
        consumer_id=principal.consumer_id,
        pool_id=pool_id,
        share_token=body["share_token"],
    )
    return result, 201


@mp.route("/pools/<int:pool_id>/share-opens", methods=["POST"])
@consumer_required
@mp.arguments(ShareOpenSchema)
@mp.response(204)
def share_opened(body: dict[str, Any], pool_id: int) -> None:
    """A friend opened a share link (the funnel's first step); a bad token counts nothing."""
    service.record_share_open(
        merchant_id=current_consumer().merchant_id, pool_id=pool_id, token=body["share_token"]
    )
    commit()
