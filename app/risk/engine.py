"""The one decision point: :func:`decide` (action, subject, context) → :class:`Decision`.

Every claim (red packet, pool grab, coupon), every paid order's rewards and every withdrawal asks it.
Counters and windows are one Redis script call (:mod:`app.risk.counters`); the decision, with its reasons,
scores and what it saw, is added to the caller's transaction (it commits or rolls back with the claim).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from app.consumers.models import Consumer, ConsumerStatus
from app.core.calendar import beijing_day_start, beijing_month_start, beijing_week_start
from app.core.db import utcnow
from app.core.errors import Forbidden, RateLimited
from app.extensions import db
from app.queue.queues import get_redis
from app.risk import counters
from app.risk.clients import Client, digest
from app.risk.counters import Step, key_prefix
from app.risk.links import link_all, member_key, size_prefix
from app.risk.models import Action, HoldStatus, LinkKind, Outcome, RiskHold, RiskPolicy
from app.risk.policy import Policy, policy_from
from app.risk.records import write_decision

DAY = 86400
_POLICY_CACHE = "hongli.risk_policies"
_POLICY_SECONDS = 5.0  # how stale a process's copy of a merchant's policy may be

# Reason codes (stable: clients and the console read them).
LIMIT_REASONS = {
    "ip_day": "ip_daily_limit",
    "ip_gap": "ip_min_interval",
    "device_day": "device_daily_limit",
    "user_day": "user_daily_limit",
    "user_week": "user_weekly_limit",
    "user_month": "user_monthly_limit",
    "group_day": "group_daily_limit",
}


class RiskLimited(RateLimited):
    code = "risk_limited"


class RiskBlocked(Forbidden):
    code = "risk_blocked"


@dataclass(frozen=True)
class Subject:
    merchant_id: int
    consumer_id: int


@dataclass(frozen=True)
class Context:
    """What the caller knows about the action. ``kind`` names it (red_packet, coupon, pool, order,
    withdrawal …); ``related`` are the other consumers it rewards (inviter, issuer, promoters: a shared
    group with the subject is self-referral); ``claims`` is how many claims a REWARD also makes (the
    red packets or coupons a paid order earns)."""

    kind: str
    reference: str | None = None
    client: Client = field(default_factory=Client)
    order_id: int | None = None
    related: tuple[int, ...] = ()
    claims: int = 0
    payer: str | None = None  # the payment's payer.openid
    at: datetime | None = None


@dataclass
class Decision:
    outcome: Outcome
    reasons: list[str]
    scores: dict[str, Any]
    claims_allowed: bool = True
    retry_after_seconds: int | None = None
    # The decision's row as written (every column but the id; None: a dry run's) and its id once written.
    row: dict[str, Any] | None = None
    record_id: int | None = None
    new_links: list[tuple[LinkKind, str]] = field(default_factory=list)
    # Of those, the ones Redis has seen with another consumer too (whose link may not be committed yet).
    seen_shared: list[tuple[LinkKind, str]] = field(default_factory=list)
    hold_order_id: int | None = None  # the order whose hold is written with the decision (a held reward)

    @property
    def refused(self) -> bool:
        return self.outcome in (Outcome.LIMIT, Outcome.BLOCK)

    def enforce(self) -> None:
        """Raise the refusal (429 ``risk_limited`` / 403 ``risk_blocked``, reasons in details) if any."""
        details = {"reasons": self.reasons}
        if self.outcome is Outcome.BLOCK:
            raise RiskBlocked("refused by risk control", details=details)
        if self.outcome is Outcome.LIMIT:
            raise RiskLimited(
                "refused by risk control: " + ", ".join(self.reasons),
                retry_after_seconds=self.retry_after_seconds or 60,
                details=details,
            )


ALLOW = Decision(Outcome.ALLOW, [], {})


# ---------------------------------------------------------------- policy


def policy_of(merchant_id: int) -> tuple[Policy, int]:
    """The merchant's policy and its version (0: the defaults), cached a few seconds per process."""
    cache: dict[int, tuple[float, Policy, int]] = current_app.extensions.setdefault(_POLICY_CACHE, {})
    hit = cache.get(merchant_id)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1], hit[2]
    row = db.session.execute(
        select(RiskPolicy.settings, RiskPolicy.version).where(RiskPolicy.merchant_id == merchant_id)
    ).one_or_none()
    policy, version = (policy_from(None), 0) if row is None else (policy_from(row[0]), int(row[1]))
    cache[merchant_id] = (time.monotonic() + _POLICY_SECONDS, policy, version)
    return policy, version


def forget_policy(merchant_id: int) -> None:
    current_app.extensions.setdefault(_POLICY_CACHE, {}).pop(merchant_id, None)


# ---------------------------------------------------------------- the decision


def decide(
    action: Action,
    subject: Subject,
    context: Context,
    *,
    policy: Policy | None = None,
    store: counters.MemoryStore | None = None,
    hold_order_id: int | None = None,
    write: bool = True,
) -> Decision:
    """Decide ``action`` for ``subject``: allow, limit (refused, reason codes), hold (booked, held for
    review) or block. The decision is recorded in the caller's transaction (``write=False``: by the
    caller, :func:`persist`), with ``hold_order_id`` and an enforced hold the order's hold in the same
    statement; a refusal is not raised here (call :meth:`Decision.enforce`). With ``store`` (the dry
    run: in-memory counters and a candidate ``policy``) nothing is recorded, linked or counted in Redis."""
    dry = store is not None
    version = -1
    if policy is None:
        policy, version = policy_of(subject.merchant_id)
    if not policy.enabled:
        return ALLOW
    now = context.at or utcnow()
    client = context.client
    # A paid order's client (who asked to pay it) is read inside the script: one round trip, not two.
    order_key = None
    if action is Action.REWARD and context.order_id is not None and client.ip is None and not dry:
        order_key = _order_key(subject.merchant_id, context.order_id)
    facts: dict[str, Any] = {}
    phone = None
    if action is not Action.CLAIM:
        # Read fresh every time (a ban must hold at once): two columns, no ORM object.
        found = db.session.execute(
            select(Consumer.status, Consumer.phone).where(Consumer.id == subject.consumer_id)
        ).one_or_none()
        phone = None if found is None else found[1]
        if found is None or found[0] is ConsumerStatus.BANNED:
            if order_key is not None:  # rare: the client read on its own, for the record
                client = _client_at(order_key) or client
            return _finish(
                Outcome.BLOCK,
                ["banned"],
                {},
                action,
                subject,
                context,
                client,
                version,
                dry,
                enforced=policy.enforce,
                write=write,
            )
    now_ms = int(now.timestamp() * 1000)
    if store is not None:
        steps = _steps(action, subject, context, client, policy, now, phone)
        result = store.run(steps, now_ms)
    else:
        steps = _steps(action, subject, context, client, policy, now, phone, order_key=order_key)
        result = counters.run(steps, now_ms)
        if result.retry:  # a client stored by an older version: read it here, then run the script
            client = _parsed_client(result.client) or client
            steps = _steps(action, subject, context, client, policy, now, phone)
            result = counters.run(steps, now_ms)
        elif order_key is not None:
            client = _parsed_client(result.client) or client
            steps, result = _resolved(steps, result, client)
    return _conclude(
        action,
        subject,
        context,
        client,
        policy,
        version,
        steps,
        result,
        facts=facts,
        phone=phone,
        dry=dry,
        hold_order_id=hold_order_id,
        write=write,
    )


@dataclass(frozen=True)
class ClaimPlan:
    """A claim's decision before its counters ran: the script's steps, and what the script that runs them
    must not do when the claim is refused (:attr:`veto`), for a caller whose own Redis step runs them in
    the same script (a pool grab: app.pools.hot)."""

    subject: Subject
    context: Context
    policy: Policy
    version: int
    steps: list[Step]
    now_ms: int

    @property
    def refused_already(self) -> bool:
        """Enforced, and refused whatever the counters say (a device is required and none was sent)."""
        refusal = _device_refusal(Action.CLAIM, self.context, self.context.client, self.policy)
        return self.policy.enforce and refusal is not None

    @property
    def veto(self) -> tuple[str, str]:
        """(mode, conditions) for the script: mode ``o`` observe (never refused: go on), ``x`` refused
        already, ``e`` enforced — refused when a limit failed or a condition holds. Conditions
        ``<step index>:size:<n>`` (the member step's group size above n) and ``<step index>:rank:<n>``
        (rank n or more), 1-based: exactly the claim refusals :func:`_conclude` finds in the values."""
        if not self.policy.enforce:
            return "o", ""
        if self.refused_already:
            return "x", ""
        conditions = []
        for index, step in enumerate(self.steps, start=1):
            if step.name == "group" and self.policy.max_group_size:
                conditions.append(f"{index}:size:{self.policy.max_group_size}")
            limit = {
                "rank_ip": self.policy.new_accounts_per_ip_per_day,
                "rank_device": self.policy.new_accounts_per_device_per_day,
            }.get(step.name)
            if limit:
                conditions.append(f"{index}:rank:{limit}")
        return "e", ";".join(conditions)


def plan_claim(subject: Subject, context: Context) -> ClaimPlan | None:
    """A claim's steps, to run in the caller's own script (None: the merchant's engine is off); then
    :func:`conclude_claim` with what they answered."""
    policy, version = policy_of(subject.merchant_id)
    if not policy.enabled:
        return None
    now = context.at or utcnow()
    steps = _steps(Action.CLAIM, subject, context, context.client, policy, now, None)
    return ClaimPlan(subject, context, policy, version, steps, int(now.timestamp() * 1000))


def conclude_claim(plan: ClaimPlan, result: counters.Outcome) -> Decision:
    """The decision of a planned claim from its counters' answer (not written: see :func:`persist`)."""
    return _conclude(
        Action.CLAIM,
        plan.subject,
        plan.context,
        plan.context.client,
        plan.policy,
        plan.version,
        plan.steps,
        result,
        facts={},
        phone=None,
        dry=False,
        hold_order_id=None,
        write=False,
    )


def _device_refusal(action: Action, context: Context, client: Client, policy: Policy) -> str | None:
    """Why a claim is refused for its device whatever the counters say (None: it is not)."""
    if (action is Action.CLAIM or context.claims) and policy.require_device and client.device_digest is None:
        return "device_forged" if client.device_sent else "device_missing"
    return None


def _conclude(
    action: Action,
    subject: Subject,
    context: Context,
    client: Client,
    policy: Policy,
    version: int,
    steps: list[Step],
    result: counters.Outcome,
    *,
    facts: dict[str, Any],
    phone: str | None,
    dry: bool,
    hold_order_id: int | None,
    write: bool,
) -> Decision:
    holds: list[str] = []
    values = result.values
    facts.update({k: v for k, v in values.items() if not k.startswith("seen_")})
    limited = [LIMIT_REASONS[name] for name in result.failed if name in LIMIT_REASONS]
    claims_allowed = not limited
    device_refusal = _device_refusal(action, context, client, policy)
    if device_refusal is not None:
        limited.append(device_refusal)
        claims_allowed = False
    retry = None
    if "ip_gap" in result.failed:
        retry = max(1, policy.ip_min_interval_seconds - int(values.get("ip_gap") or 0))
    group_size = _group_size(values.get("group"))
    facts["group_size"] = group_size
    if policy.max_group_size and group_size > policy.max_group_size:
        holds.append("linked_group")
    for name, reason in (("rank_ip", "new_accounts_per_ip"), ("rank_device", "new_accounts_per_device")):
        rank = values.get(name)
        limit = (
            policy.new_accounts_per_ip_per_day
            if name == "rank_ip"
            else policy.new_accounts_per_device_per_day
        )
        if rank is not None and limit and int(rank) >= limit:
            holds.append(reason)
    if action is Action.REWARD:
        holds += _reward_holds(policy, values, subject, context, phone)
    if (
        action is Action.WITHDRAW
        and policy.hold_withdrawals_under_review
        and not dry
        and _has_open_hold(subject)
    ):
        holds.append("reward_under_review")
    new_links, seen_shared = ([], []) if dry else _new_links(values, steps)
    if action is Action.CLAIM and limited:
        # A refused claim says why it was refused; the other signals it showed stay in its scores.
        facts["signals"] = ",".join(holds)
        outcome, holds = Outcome.LIMIT, []
    elif action is Action.CLAIM:
        # A claim holds no money to keep back: a signal that would hold a reward refuses a claim (its
        # counters were taken: the farm's attempts count too).
        outcome = Outcome.LIMIT if holds else Outcome.ALLOW
    else:
        # A held reward's order issues no red packet or coupon either: approval releases the grants.
        claims_allowed = claims_allowed and not holds
        outcome = Outcome.HOLD if holds else (Outcome.LIMIT if limited else Outcome.ALLOW)
    return _finish(
        outcome,
        limited + holds,
        facts,
        action,
        subject,
        context,
        client,
        version,
        dry,
        enforced=policy.enforce,
        claims_allowed=claims_allowed,
        retry=retry,
        new_links=new_links,
        seen_shared=seen_shared,
        hold_order_id=hold_order_id,
        write=write,
    )


def _finish(
    outcome: Outcome,
    reasons: list[str],
    scores: dict[str, Any],
    action: Action,
    subject: Subject,
    context: Context,
    client: Client,
    version: int,
    dry: bool,
    *,
    enforced: bool = True,
    claims_allowed: bool = True,
    retry: int | None = None,
    new_links: list[tuple[LinkKind, str]] | None = None,
    seen_shared: list[tuple[LinkKind, str]] | None = None,
    hold_order_id: int | None = None,
    write: bool = True,
) -> Decision:
    decision = Decision(
        outcome,
        reasons,
        _json_safe(scores),
        claims_allowed=claims_allowed and outcome is not Outcome.BLOCK,
        retry_after_seconds=retry,
        new_links=new_links or [],
        seen_shared=seen_shared or [],
    )
    if dry:
        return decision
    # What it saw that is not a score (the scores — the counters' values — are their own column).
    facts_row: dict[str, Any] = {"related": list(context.related), "claims": context.claims}
    if not enforced:
        # Observe mode: recorded as decided (the dry run's and the console's material), nothing enforced.
        facts_row["enforced"] = False
    decision.row = {
        "merchant_id": subject.merchant_id,
        "consumer_id": subject.consumer_id,
        "action": action,
        "kind": context.kind[:32],
        "reference": (context.reference or (f"order:{context.order_id}" if context.order_id else None)),
        "outcome": outcome,
        "reasons": reasons,
        "scores": decision.scores,
        "ip": client.ip,
        "device": client.device_digest,
        "facts": facts_row,
        "policy_version": max(version, 0),
        "created_at": context.at or utcnow(),
    }
    if not enforced:
        decision.outcome, decision.reasons, decision.claims_allowed = Outcome.ALLOW, [], True
        decision.retry_after_seconds = None
    if decision.outcome is Outcome.HOLD:
        decision.hold_order_id = hold_order_id
    if write:
        persist(decision)
    return decision


def persist(decision: Decision) -> None:
    """Write the decision's row, the links it saw first and its hold (if any) in the session's
    transaction — again after a rollback (a claim refused: the decision is kept, the claim is not)."""
    if decision.row is None:
        return
    decision.record_id = write_decision(
        decision.row,
        links=decision.new_links,
        hold_order_id=decision.hold_order_id,
        seen_shared=decision.seen_shared,
    )


def _json_safe(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v if isinstance(v, int | str | float | bool) or v is None else str(v)) for k, v in values.items()
    }


def _group_size(member: object) -> int:
    if not member:
        return 1
    return int(str(member).split(":", 1)[1])


def _group_id(member: object, consumer_id: int) -> int:
    if not member:
        return consumer_id
    return int(str(member).split(":", 1)[0])


def _steps(
    action: Action,
    subject: Subject,
    context: Context,
    client: Client,
    policy: Policy,
    now: datetime,
    phone: str | None,
    *,
    order_key: str | None = None,
) -> list[Step]:
    """The script's steps. With ``order_key`` the client is the one stored there, read by the script's
    first step: its IP and device digests are the placeholders ``@ip@`` / ``@dev@``."""
    m, me = subject.merchant_id, subject.consumer_id
    p = key_prefix(m)
    day = int(beijing_day_start(now).timestamp())
    steps = [Step("group", "member", member_key(m, me), prefix=size_prefix(m))]
    ip, device = client.ip_digest, client.device_digest
    if order_key is not None:
        steps.insert(0, Step("client", "client", order_key))
        ip, device = IP_PLACEHOLDER, DEVICE_PLACEHOLDER
    if action is Action.CLAIM or context.claims:
        if ip is not None:
            steps += [
                Step("ip_day", "cap", f"{p}:ip:{ip}:d:{day}", policy.ip_claims_per_day, 2 * DAY),
                Step("ip_gap", "gap", f"{p}:ip:{ip}:last", policy.ip_min_interval_seconds, DAY),
            ]
        if device is not None:
            steps.append(
                Step("device_day", "cap", f"{p}:dev:{device}:d:{day}", policy.device_claims_per_day, 2 * DAY)
            )
        week = int(beijing_week_start(now).timestamp())
        month = int(beijing_month_start(now).timestamp())
        steps += [
            Step("user_day", "cap", f"{p}:u:{me}:d:{day}", policy.user_claims_per_day, 2 * DAY),
            Step("user_week", "cap", f"{p}:u:{me}:w:{week}", policy.user_claims_per_week, 8 * DAY),
            Step("user_month", "cap", f"{p}:u:{me}:m:{month}", policy.user_claims_per_month, 32 * DAY),
            Step(
                "group_day",
                "group",
                member_key(m, me),
                policy.group_claims_per_day,
                2 * DAY,
                f"{p}:gc:d{day}:",
            ),
        ]
    links: list[tuple[str, str | None]] = [("ip", ip), ("device", device)]
    if action is Action.REWARD:
        links.append(("payer", None if not context.payer else digest("payer", context.payer)))
    if phone:
        links.append(("phone", digest("phone", phone)))
    for kind, value in links:
        if value is None:
            continue
        if kind in ("ip", "device"):
            steps.append(Step(f"rank_{kind}", "rank", f"{p}:acc:{kind}:{value}:d:{day}", me, 2 * DAY))
        if kind in policy.link_by:
            steps.append(Step(f"seen_{kind}:{value}", "sadd", f"{p}:seen:{kind}:{value}", me, 40 * DAY))
    if action is Action.REWARD:
        hour = int(now.timestamp()) // 3600
        month = int(beijing_month_start(now).timestamp())
        steps += [
            Step("trail", "zcount", f"{p}:trail:{me}", policy.trail_window_minutes * 60),
            Step("refunds", "get", f"{p}:rf:{me}:m:{month}"),
            Step("orders_hour", "incr", f"{p}:ord:{me}:h:{hour}", 0, 2 * 3600),
        ]
        for other in sorted(set(context.related) - {me}):
            steps.append(Step(f"related:{other}", "member", member_key(m, other), prefix=size_prefix(m)))
    return steps


def _reward_holds(
    policy: Policy, values: dict[str, Any], subject: Subject, context: Context, phone: str | None
) -> list[str]:
    holds = []
    if policy.trail_window_minutes and not int(values.get("trail") or 0):
        holds.append("no_trail")
    if policy.refunds_per_month and int(values.get("refunds") or 0) >= policy.refunds_per_month:
        holds.append("refund_loop")
    if (
        policy.orders_per_user_per_hour
        and int(values.get("orders_hour") or 0) > policy.orders_per_user_per_hour
    ):
        holds.append("order_velocity")
    mine = _group_id(values.get("group"), subject.consumer_id)
    for other in context.related:
        theirs = (
            subject.consumer_id
            if other == subject.consumer_id
            else _group_id(values.get(f"related:{other}"), other)
        )
        if theirs == mine:
            holds.append("self_referral")
            break
    for name, value in values.items():
        if name.startswith("seen_payer:") and value and int(str(value).split(":")[1]) > 1:
            holds.append("shared_payer")
        if name.startswith("seen_phone:") and value and int(str(value).split(":")[1]) > 1:
            holds.append("shared_phone")
    if phone:
        digits = phone.removeprefix("+86").removeprefix("86") if len(phone) > 11 else phone
        if any(digits.startswith(prefix) for prefix in policy.virtual_prefixes):
            holds.append("virtual_number")
    return holds


def _has_open_hold(subject: Subject) -> bool:
    return bool(
        db.session.scalar(
            select(func.count(RiskHold.id)).where(
                RiskHold.merchant_id == subject.merchant_id,
                RiskHold.consumer_id == subject.consumer_id,
                RiskHold.status == HoldStatus.HELD,
            )
        )
    )


def _new_links(
    values: dict[str, Any], steps: list[Step]
) -> tuple[list[tuple[LinkKind, str]], list[tuple[LinkKind, str]]]:
    """The identifiers new for this consumer (written once: later sharers find them, merging groups), and
    of those the ones Redis's set shows another consumer was seen with too (``"1:<size>"``, size > 1)."""
    new, seen_shared = [], []
    for step in steps:
        added, _, size = str(values.get(step.name) or "0:0").partition(":")
        if step.name.startswith("seen_") and added == "1":
            kind, value = step.name.removeprefix("seen_").split(":", 1)
            new.append((LinkKind(kind), value))
            if int(size or 0) > 1:
                seen_shared.append((LinkKind(kind), value))
    return new, seen_shared


# ---------------------------------------------------------------- the order's client (set at pay time)


def _order_key(merchant_id: int, order_id: int) -> str:
    return f"{key_prefix(merchant_id)}:oc:{order_id}"


def remember_order_client(*, merchant_id: int, consumer_id: int, order_id: int, client: Client) -> None:
    """Keep who asked to pay ``order_id`` (IP, device digest) for the decision on its rewards at payment,
    and link the consumer to them (one pipeline; the database only for an identifier new to them)."""
    if client.ip is None and client.device_digest is None:
        return
    policy, _ = policy_of(merchant_id)
    p = key_prefix(merchant_id)
    pipe = get_redis().pipeline(transaction=False)
    pipe.set(
        _order_key(merchant_id, order_id),
        # Read by the decision's script at payment, which names the IP's and device's keys from it.
        f"v2|{client.ip or ''}|{client.ip_digest or ''}|{client.device_digest or ''}|{consumer_id}",
        ex=8 * DAY,
    )
    seen = [
        (LinkKind(kind), value)
        for kind, value in (("ip", client.ip_digest), ("device", client.device_digest))
        if value is not None and kind in policy.link_by
    ]
    for kind, value in seen:
        pipe.sadd(f"{p}:seen:{kind.value}:{value}", consumer_id)
        pipe.expire(f"{p}:seen:{kind.value}:{value}", 40 * DAY)
    answers = pipe.execute()
    new = [pair for index, pair in enumerate(seen) if answers[1 + 2 * index]]
    link_all(merchant_id=merchant_id, consumer_id=consumer_id, pairs=new)


def _client_at(key: str) -> Client | None:
    raw = get_redis().get(key)
    return _parsed_client(raw.decode() if isinstance(raw, bytes) else raw)


def _parsed_client(raw: str | None) -> Client | None:
    """The client kept at pay time: ``v2|ip|ip digest|device digest|consumer`` (older: ``ip|device|
    consumer``)."""
    if not raw:
        return None
    parts = raw.split("|")
    ip, device = (parts[1], parts[3]) if parts[0] == "v2" else (parts[0], parts[1])
    return Client(ip=ip or None, device_hash=device or None, device_sent=bool(device))


IP_PLACEHOLDER, DEVICE_PLACEHOLDER = "@ip@", "@dev@"


def _resolved(
    steps: list[Step], result: counters.Outcome, client: Client
) -> tuple[list[Step], counters.Outcome]:
    """The steps and values of a script run with the order's client as placeholders, named with its
    digests; the steps it skipped (the client has no such identifier) dropped, as if never asked."""
    ip, device = client.ip_digest, client.device_digest
    resolved: list[Step] = []
    values: dict[str, Any] = {}
    for step in steps:
        if step.op == "client":
            continue
        named = step
        if IP_PLACEHOLDER in step.key or DEVICE_PLACEHOLDER in step.key:
            if (IP_PLACEHOLDER in step.key and ip is None) or (
                DEVICE_PLACEHOLDER in step.key and device is None
            ):
                continue
            name = step.name.replace(IP_PLACEHOLDER, ip or "").replace(DEVICE_PLACEHOLDER, device or "")
            named = Step(name, step.op, step.key, step.limit, step.ttl, step.prefix)
        resolved.append(named)
        values[named.name] = result.values.get(step.name)
    return resolved, counters.Outcome(failed=result.failed, values=values)


# ---------------------------------------------------------------- signals fed from elsewhere


def note_trail(*, merchant_id: int, consumer_id: int, moments: list[datetime]) -> None:
    """Browse/cart events of a consumer (their times) for the fake-order trail signal."""
    if not moments:
        return
    key = f"{key_prefix(merchant_id)}:trail:{consumer_id}"
    pipe = get_redis().pipeline(transaction=False)
    pipe.zadd(key, {str(int(at.timestamp() * 1000)): int(at.timestamp() * 1000) for at in moments})
    pipe.zremrangebyrank(key, 0, -101)  # the latest 100 are enough for any window
    pipe.expire(key, 8 * DAY)
    pipe.execute()


def note_refund(*, merchant_id: int, consumer_id: int, at: datetime | None = None) -> None:
    """A refund of a consumer's order, for the buy-redeem-refund loop signal."""
    month = int(beijing_month_start(at or utcnow()).timestamp())
    key = f"{key_prefix(merchant_id)}:rf:{consumer_id}:m:{month}"
    pipe = get_redis().pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, 32 * DAY)
    pipe.execute()


def on_refund_succeeded(event: Any) -> None:
    """Subscribed to ``refund.succeeded``: count the refund for the buyer's refund-loop signal."""
    from app.orders.models import Order

    consumer_id = db.session.scalar(
        select(Order.consumer_id).where(Order.id == int(event.payload["order_id"]))
    )
    if consumer_id is not None:
        note_refund(merchant_id=event.merchant_id, consumer_id=consumer_id)
