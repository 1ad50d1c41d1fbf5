"""Red-packet pools: the list with each pool's state and key figures, the create form (fixed or 拼手气
random split, window, audience, payout, fission tiers), open / close, and a pool's page with its stats,
its grants and the fission funnel per share link.

Roles as the pools API's: every role reads; an operator (or the owner) creates, opens and closes. Each
action calls the service the API calls (which audits).
"""

from __future__ import annotations

import secrets
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import flash, make_response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from app.audit.service import Actor
from app.auth.principals import Role
from app.campaigns import service as campaigns
from app.campaigns.models import CampaignStatus
from app.core.errors import InvalidInput
from app.core.money import Money
from app.core.tx import commit
from app.pools import service, stats
from app.pools.models import Audience, PoolPayout, PoolStatus, SplitKind
from app.pools.schemas import PoolCreateSchema
from app.queue.queues import get_redis
from app.web.blueprint import bp
from app.web.forms import fen, load, local_time
from app.web.guards import current_page, page
from app.web.queries import pool_grab_totals, pool_grants

TIERS = 5  # the ladder's rows on the form (PoolCreateSchema allows at most 5)
GRANTS_PAGE = 100
# A create form's key, held in Redis for a day: a double submit makes one pool. The pools API takes no
# idempotency key (a draft moves no money, so the API leaves it to the caller); the page keeps its own.
FORM_KEY_TTL = 86_400
_PENDING = "pending"


def _actor() -> Actor:
    return Actor("staff", str(current_page().principal.staff_id))


def _number(field: str) -> int | str:
    raw = request.form.get(field, "").strip()
    return int(raw) if raw.isdigit() and len(raw) < 10 else raw


def _rate_bp(field: str) -> int:
    """A rate typed in % (``"2.5"``) as basis points, exactly (422 naming the field otherwise)."""
    text = request.form.get(field, "").strip() or "0"
    try:
        value = Decimal(text) * 100
    except InvalidOperation:
        raise InvalidInput("not a rate", details={"fields": {field: ["a number of %"]}}) from None
    if value != value.to_integral_value() or not value.is_finite():
        raise InvalidInput("not a rate", details={"fields": {field: ["at most two decimals"]}})
    return int(value)


def _ladder() -> list[dict[str, Any]]:
    """The fission tiers filled in on the form (friends → reward in yuan), in the API's shape."""
    tiers = []
    for n in range(TIERS):
        friends = request.form.get(f"tier_friends_{n}", "").strip()
        reward = request.form.get(f"tier_reward_{n}", "").strip()
        if not friends and not reward:
            continue
        tiers.append(
            {
                "friends": int(friends) if friends.isdigit() and len(friends) < 10 else friends,
                "reward_fen": fen(f"tier_reward_{n}"),
            }
        )
    return tiers


def _form_key(merchant_id: int, key: str) -> str:
    return f"console:pool-form:{merchant_id}:{key}"


@bp.route("/m/<slug>/pools", methods=["GET"])
@page()
def red_packet_pools(slug: str) -> BaseResponse:
    """Every pool with its state and figures (two reads), and the create form for an operator."""
    ctx = current_page()
    pools = service.list_pools(merchant_id=ctx.merchant.id)
    grabbed = pool_grab_totals(merchant_id=ctx.merchant.id)
    open_campaigns = (
        [
            c
            for c in campaigns.list_campaigns(merchant_id=ctx.merchant.id)
            if c.status is not CampaignStatus.ENDED
        ]
        if ctx.may(Role.OPERATOR)
        else []
    )
    return make_response(
        render_template(
            "console/pools.html",
            pools=list(reversed(pools)),
            grabbed=grabbed,
            campaigns=open_campaigns,
            splits=[k.value for k in SplitKind],
            audiences=[a.value for a in Audience],
            payouts=[p.value for p in PoolPayout],
            tiers=range(TIERS),
            form_key=secrets.token_urlsafe(12),
        )
    )


@bp.route("/m/<slug>/pools", methods=["POST"])
@page(Role.OPERATOR)
def pool_create(slug: str) -> BaseResponse:
    """A draft pool (nothing reserved until it opens); once per the form's key."""
    ctx = current_page()
    key = request.form.get("form_key", "")
    if not 8 <= len(key) <= 64 or not key.replace("-", "").replace("_", "").isalnum():
        raise InvalidInput("invalid input", details={"fields": {"form_key": ["reload the page"]}})
    raw_campaign = request.form.get("campaign_id", "").strip()
    body = load(
        PoolCreateSchema(),
        {
            "campaign_id": int(raw_campaign)
            if raw_campaign.isdigit() and len(raw_campaign) < 19
            else raw_campaign,
            "name": request.form.get("name", "").strip(),
            "split": request.form.get("split", ""),
            "audience": request.form.get("audience", Audience.ALL.value),
            "payout": request.form.get("payout", PoolPayout.RED_PACKET.value),
            "total_fen": fen("total"),
            "count": _number("count"),
            "starts_at": local_time("starts_at"),
            "ends_at": local_time("ends_at"),
            "min_spend_fen": fen("min_spend", required=False),
            "valid_days": _number("valid_days") if request.form.get("valid_days", "").strip() else 7,
            "issuer_rate_bp": _rate_bp("issuer_rate"),
            "buyer_rate_bp": _rate_bp("buyer_rate"),
            "max_order_fen": fen("max_order", required=False),
            "ladder": _ladder(),
        },
    )
    redis = get_redis()
    guard = _form_key(ctx.merchant.id, key)
    if not redis.set(guard, _PENDING, nx=True, ex=FORM_KEY_TTL):
        first = redis.get(guard)
        first_id = first.decode() if isinstance(first, bytes) else str(first or "")
        flash("This form was already sent: one pool was created", "ok")
        if first_id.isdigit():
            return redirect(url_for("console_pages.red_packet_pool", slug=slug, pool_id=int(first_id)), 303)
        return redirect(url_for("console_pages.red_packet_pools", slug=slug), 303)
    try:
        pool = service.create_pool(
            merchant_id=ctx.merchant.id,
            campaign_id=body["campaign_id"],
            name=body["name"],
            split=SplitKind(body["split"]),
            audience=Audience(body["audience"]),
            payout=PoolPayout(body["payout"]),
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
            actor=_actor(),
            staff_id=ctx.principal.staff_id,
        )
        commit()
    except BaseException:
        redis.delete(guard)  # nothing was created: the same form may be corrected and sent again
        raise
    redis.set(guard, str(pool.id), ex=FORM_KEY_TTL)
    flash("Pool created as a draft: open it to reserve its budget", "ok")
    return redirect(url_for("console_pages.red_packet_pool", slug=slug, pool_id=pool.id), 303)


@bp.route("/m/<slug>/pools/<int:pool_id>", methods=["GET"])
@page()
def red_packet_pool(slug: str, pool_id: int) -> BaseResponse:
    """One pool: its terms, the stats service's figures with a chart, its grants, the share funnel."""
    merchant_id = current_page().merchant.id
    pool = service.get_pool(merchant_id=merchant_id, pool_id=pool_id)
    figures = stats.pool_stats(merchant_id=merchant_id, pool_id=pool.id)
    raw_before = request.args.get("before", "")
    grants = pool_grants(
        pool_id=pool.id,
        limit=GRANTS_PAGE,
        before=int(raw_before) if raw_before.isdigit() and len(raw_before) < 19 else None,
    )
    return make_response(
        render_template(
            "console/pool.html",
            pool=pool,
            s=figures,
            grants=grants,
            next_before=grants[-1]["id"] if len(grants) == GRANTS_PAGE else None,
            chart={
                "counts": [figures["grabbed"], figures["unclaimed"], figures["redeemed"]],
                "fen": [figures["grabbed_fen"], figures["unclaimed_fen"], figures["gmv_driven_fen"]],
            },
            funnel_chart={
                "sharers": [str(row["sharer_id"]) for row in figures["funnel"]],
                "opens": [row["opens"] for row in figures["funnel"]],
                "grabs": [row["grabs"] for row in figures["funnel"]],
            },
            may_open=pool.status is PoolStatus.DRAFT,
            may_close=pool.status is not PoolStatus.CLOSED,
        )
    )


@bp.route("/m/<slug>/pools/<int:pool_id>/open", methods=["POST"])
@page(Role.OPERATOR)
def pool_open(slug: str, pool_id: int) -> BaseResponse:
    """Split the pool and reserve its worst case from the campaign budget (409 when it does not fit)."""
    service.open_pool(merchant_id=current_page().merchant.id, pool_id=pool_id, actor=_actor())
    commit()
    flash("Pool opened: its budget is reserved", "ok")
    return redirect(url_for("console_pages.red_packet_pool", slug=slug, pool_id=pool_id), 303)


@bp.route("/m/<slug>/pools/<int:pool_id>/close", methods=["POST"])
@page(Role.OPERATOR)
def pool_close(slug: str, pool_id: int) -> BaseResponse:
    """Close now: the shares nobody grabbed go back to the campaign budget; best luck is marked."""
    service.close_pool(merchant_id=current_page().merchant.id, pool_id=pool_id, actor=_actor())
    commit()
    flash("Pool closed: what was not grabbed is back in the campaign budget", "ok")
    return redirect(url_for("console_pages.red_packet_pool", slug=slug, pool_id=pool_id), 303)
