"""The grab's fast path in Redis: one Lua step per grab over keys of one hash tag (``{m<merchant>}``).

The tag is the merchant's, the one the risk engine's counters use (app.risk.counters), so a grab's step
runs the risk engine's counters of the claim too: one round trip for both. Every key a script is given is
in ``KEYS[]``; the only keys a script names itself are the risk engine's linked-group counters, built
from a key it was given and in the same hash tag — so the scripts run unchanged on Redis Cluster, where a
merchant's pools and risk counters share one slot. Keys of a pool:

* ``…:state`` — ``open`` while grabs are taken; missing when Redis lost the pool (rebuilt from PostgreSQL);
* ``…:left`` — the shares not yet handed out, ``"<seq>:<fen>"``;
* ``…:who`` — the consumers who took a share (one grab each);
* ``…:flight`` — ``seq → "<consumer>:<ms>"``: handed out, not yet seen committed in PostgreSQL. A grab
  does not clear its own entry (one Redis round trip less per grab): reconciliation clears the entries
  whose grant it finds in PostgreSQL, and gives back the old ones it does not.

PostgreSQL is the record: a share handed out here is final only once its grant row committed; whatever
Redis says is rebuilt from (and reconciled against) PostgreSQL.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, NamedTuple

import redis
from flask import current_app
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.core.errors import Unavailable
from app.queue.queues import get_redis
from app.risk import counters


class RedisUnavailable(Unavailable):
    code = "redis_unavailable"


class Taken(Enum):
    REFUSED = 0  # the risk engine refused the claim: nothing taken
    CLOSED = -1
    ALREADY = -2
    EMPTY = -3
    NOT_LOADED = -4


@dataclass(frozen=True)
class Share:
    seq: int
    fen: int

    def encoded(self) -> str:
        return f"{self.seq}:{self.fen}"

    @classmethod
    def decode(cls, raw: bytes | str) -> Share:
        text = raw.decode() if isinstance(raw, bytes) else raw
        seq, fen = text.split(":")
        return cls(int(seq), int(fen))


_TAKE = """
if redis.call('GET', KEYS[1]) == false then return {-4} end
if redis.call('GET', KEYS[1]) ~= 'open' then return {-1} end
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return {-2} end
local share = redis.call('LPOP', KEYS[2])
if not share then return {-3} end
redis.call('SADD', KEYS[3], ARGV[1])
local seq = string.match(share, '^(%d+):')
redis.call('HSET', KEYS[4], seq, ARGV[1] .. ':' .. ARGV[2])
return {1, share}
"""

# The same step with the risk engine's counters of the claim in between: KEYS[1..4] the pool's, then the
# steps' keys; ARGV[1] consumer, ARGV[2] ms, ARGV[3] mode, ARGV[4] conditions, then the steps' ARGV (see
# app.risk.engine.ClaimPlan.veto). The pool's own refusals come first, counting nothing; then the
# counters (as app.risk.counters runs them); then the share, unless the claim is refused:
# {1, share, failed, values} or {0, failed, values}.
_TAKE_CHECKED = (
    counters.FUNCTION
    + """
if redis.call('GET', KEYS[1]) == false then return {-4} end
if redis.call('GET', KEYS[1]) ~= 'open' then return {-1} end
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return {-2} end
if redis.call('LLEN', KEYS[2]) == 0 then return {-3} end
local RK, RA = {}, {}
for i = 5, #KEYS do RK[#RK + 1] = KEYS[i] end
for i = 5, #ARGV do RA[#RA + 1] = ARGV[i] end
local risk = risk_steps(RK, RA)
local refused = ARGV[3] == 'x' or (ARGV[3] == 'e' and #risk[1] > 0)
if ARGV[3] == 'e' then
  for i, kind, limit in string.gmatch(ARGV[4], '(%d+):(%a+):(%d+)') do
    local v = risk[2][tonumber(i)]
    if v and kind == 'size' and tonumber(string.match(v, ':(%d+)$')) > tonumber(limit) then refused = true end
    if v and kind == 'rank' and tonumber(v) >= tonumber(limit) then refused = true end
  end
end
if refused then return {0, risk[1], risk[2]} end
local share = redis.call('LPOP', KEYS[2])
redis.call('SADD', KEYS[3], ARGV[1])
local seq = string.match(share, '^(%d+):')
redis.call('HSET', KEYS[4], seq, ARGV[1] .. ':' .. ARGV[2])
return {1, share, risk[1], risk[2]}
"""
)

# Undo a take whose grant did not commit: the share goes back (unless PostgreSQL holds it), the user out.
_GIVE_BACK = """
local seq = string.match(ARGV[1], '^(%d+):')
local holder = redis.call('HGET', KEYS[4], seq)
if holder == false or string.match(holder, '^(%d+):') ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[4], seq)
if ARGV[3] == '1' then redis.call('LPUSH', KEYS[2], ARGV[1]) end
if ARGV[4] == '1' then redis.call('SREM', KEYS[3], ARGV[2]) end
return 1
"""

# Clear in-flight entries PostgreSQL holds the grants of: ARGV = seq, consumer, seq, consumer … (an entry is
# cleared only while that consumer holds it). The number cleared.
_SETTLE = """
local n = 0
for i = 1, #ARGV, 2 do
  local holder = redis.call('HGET', KEYS[4], ARGV[i])
  if holder and string.match(holder, '^(%d+):') == ARGV[i + 1] then
    redis.call('HDEL', KEYS[4], ARGV[i])
    n = n + 1
  end
end
return n
"""

# ARGV[1] state, ARGV[2] "force" or "missing" (only when Redis lost the pool), ARGV[3] n, shares, users.
_REBUILD = """
if ARGV[2] ~= 'force' and redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
local n = tonumber(ARGV[3])
for i = 1, n do redis.call('RPUSH', KEYS[2], ARGV[3 + i]) end
for i = 4 + n, #ARGV do redis.call('SADD', KEYS[3], ARGV[i]) end
redis.call('SET', KEYS[1], ARGV[1])
return n
"""


class Ref(NamedTuple):
    """A pool as Redis names it: its merchant is part of the name, so another merchant's pool id
    names nothing here."""

    merchant_id: int
    pool_id: int


Lock = Literal["rebuilding", "reconciling"]  # one process rebuilds a lost pool; one reconciles a pool


class PoolKeys:
    """The Redis keys of one pool (one hash tag)."""

    def __init__(self, ref: Ref) -> None:
        prefix = current_app.extensions["hongli.settings"].queue.prefix
        pool = f"{prefix}:pool:{{m{ref.merchant_id}}}:p{ref.pool_id}"
        self.state, self.left, self.who, self.flight = (
            f"{pool}:{part}" for part in ("state", "left", "who", "flight")
        )
        self._pool = pool
        self._ref, self._prefix = ref, prefix

    def legacy(self) -> list[str]:
        """The keys of the layout before 2026-12-07 (a hash tag per pool): deleted by reconciliation, so
        that code of that layout, rolled back to, rebuilds from PostgreSQL instead of resuming from stale
        keys. (Named only when asked: not on a grab's path.)"""
        legacy = f"{self._prefix}:pool:{{m{self._ref.merchant_id}p{self._ref.pool_id}}}"
        return [f"{legacy}:{part}" for part in ("state", "left", "who", "flight")]

    def all(self) -> list[str]:
        return [self.state, self.left, self.who, self.flight]

    def lock(self, purpose: Lock) -> str:
        return f"{self._pool}:{purpose}"


def _client() -> redis.Redis:
    return get_redis()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _unavailable(exc: Exception) -> RedisUnavailable:
    return RedisUnavailable(
        "grabbing is unavailable for a moment; try again", details={"reason": type(exc).__name__}
    )


class RiskSteps(NamedTuple):
    """A claim's risk counters to run inside the grab's step (app.risk.engine.ClaimPlan)."""

    steps: Sequence[counters.Step]
    now_ms: int
    mode: str
    conditions: str


def take(
    ref: Ref, consumer_id: int, risk: RiskSteps | None = None
) -> tuple[Share | Taken, counters.Outcome | None]:
    """The one atomic grab step: open? not yet grabbed? a share left? (then, with ``risk``, the claim's
    counters: refused?) → the share, now "in flight". The counters' answer, when they ran."""
    keys = PoolKeys(ref)
    try:
        if risk is None:
            answer = _script(_TAKE)(keys=keys.all(), args=[consumer_id, _now_ms()], client=_client())
        else:
            answer = _script(_TAKE_CHECKED)(
                keys=[*keys.all(), *(step.key for step in risk.steps)],
                args=[
                    consumer_id,
                    _now_ms(),
                    risk.mode,
                    risk.conditions,
                    *counters.arguments(risk.steps, risk.now_ms),
                ],
                client=_client(),
            )
    except redis.RedisError as exc:
        raise _unavailable(exc) from exc
    code = int(answer[0])
    if code == 1:
        ran = None if risk is None else counters.outcome(risk.steps, answer[2:])
        return Share.decode(answer[1]), ran
    if code == 0 and risk is not None:
        return Taken.REFUSED, counters.outcome(risk.steps, answer[1:])
    return Taken(code), None


_SCRIPTS = "hongli.pool_scripts"


def _script(source: str) -> Any:
    """The script registered once per app (EVALSHA; loaded again by redis-py if Redis lost it)."""
    scripts: dict[str, Any] = current_app.extensions.setdefault(_SCRIPTS, {})
    script = scripts.get(source)
    if script is None:
        script = scripts[source] = _client().register_script(source)
    return script


def left(ref: Ref) -> int | None:
    """Shares not yet handed out, straight from Redis (None if Redis does not hold the pool)."""
    keys = PoolKeys(ref)
    pipe = _client().pipeline(transaction=False)
    pipe.exists(keys.state)
    pipe.llen(keys.left)
    try:
        held, length = pipe.execute()
    except redis.RedisError as exc:
        raise _unavailable(exc) from exc
    return int(length) if held else None


def give_back(ref: Ref, share: Share, consumer_id: int, *, share_back: bool, user_out: bool) -> bool:
    """Undo a take that did not become a grant (only while this consumer still holds it in flight)."""
    keys = PoolKeys(ref)
    flags = ("1" if share_back else "0", "1" if user_out else "0")
    return bool(_client().eval(_GIVE_BACK, 4, *keys.all(), share.encoded(), str(consumer_id), *flags))


def settle(ref: Ref, granted: list[tuple[int, int]]) -> int:
    """Clear the in-flight entries of ``granted`` (seq, consumer) — their grants are committed — in one
    step; an entry another consumer holds is left alone. How many were cleared."""
    if not granted:
        return 0
    args = [str(part) for pair in granted for part in pair]
    try:
        return int(_client().eval(_SETTLE, 4, *PoolKeys(ref).all(), *args))
    except redis.RedisError as exc:
        raise _unavailable(exc) from exc


def rebuild(ref: Ref, *, state: str, left: list[Share], who: list[int], force: bool = False) -> bool:
    """Replace the pool's keys with what PostgreSQL says, in one atomic step: only if Redis lost the
    pool (its state key is missing), unless ``force`` (nothing in flight: PostgreSQL alone decides)."""
    keys = PoolKeys(ref)
    mode = "force" if force else "missing"
    args = [state, mode, str(len(left)), *(share.encoded() for share in left), *(str(c) for c in who)]
    try:
        return int(_client().eval(_REBUILD, 4, *keys.all(), *args)) >= 0
    except redis.RedisError as exc:
        raise _unavailable(exc) from exc


def claim(ref: Ref, purpose: Lock, seconds: int) -> bool:
    """Take the pool's ``purpose`` lock for ``seconds`` (False: another process holds it)."""
    try:
        return bool(_client().set(PoolKeys(ref).lock(purpose), "1", nx=True, ex=seconds))
    except redis.RedisError as exc:
        raise _unavailable(exc) from exc


def release(ref: Ref, purpose: Lock) -> None:
    with contextlib.suppress(redis.RedisError):
        _client().delete(PoolKeys(ref).lock(purpose))


def forget(ref: Ref) -> None:
    """Drop the pool's keys (it closed; PostgreSQL refuses grabs anyway), and those of the earlier layout."""
    with contextlib.suppress(redis.RedisError):
        _client().delete(*PoolKeys(ref).all())
    forget_legacy(ref)


def forget_legacy(ref: Ref) -> None:
    """Drop the pool's keys of the earlier layout, if any. A call of their own: they share their own
    per-pool hash tag, another Cluster slot than the merchant's (one DELETE of both would be refused)."""
    with contextlib.suppress(redis.RedisError):
        _client().delete(*PoolKeys(ref).legacy())


@dataclass(frozen=True)
class Snapshot:
    state: str | None
    left: list[Share]
    who: set[int]
    flight: dict[int, tuple[int, int]]  # seq → (consumer, ms)


def snapshot(ref: Ref) -> Snapshot:
    """What Redis holds for the pool (read in one MULTI, so it is one moment)."""
    keys = PoolKeys(ref)
    pipe = _client().pipeline(transaction=True)
    pipe.get(keys.state)
    pipe.lrange(keys.left, 0, -1)
    pipe.smembers(keys.who)
    pipe.hgetall(keys.flight)
    try:
        state, left, who, flight = pipe.execute()
    except redis.RedisError as exc:
        raise _unavailable(exc) from exc
    in_flight: dict[int, tuple[int, int]] = {}
    for seq, value in flight.items():
        consumer, ms = value.decode().split(":")
        in_flight[int(seq)] = (int(consumer), int(ms))
    return Snapshot(
        state.decode() if state is not None else None,
        [Share.decode(raw) for raw in left],
        {int(raw) for raw in who},
        in_flight,
    )


def now_ms() -> int:
    return _now_ms()


_AFTER_COMMIT = "hongli.pools.after_commit"


def after_commit(fn: Callable[..., object], *args: Any, **kwargs: Any) -> None:
    """Run ``fn(*args, **kwargs)`` once the current transaction commits (dropped on rollback); it must
    not use the database (the session is between transactions then)."""
    from app.extensions import db

    session = db.session()
    session.info.setdefault(_AFTER_COMMIT, []).append((fn, args, kwargs))
    if not event.contains(Session, "after_commit", _run_after_commit):
        event.listen(Session, "after_commit", _run_after_commit)
        event.listen(Session, "after_soft_rollback", _drop_after_commit)


def _run_after_commit(session: Session) -> None:
    for fn, args, kwargs in session.info.pop(_AFTER_COMMIT, []):
        # Redis is a cache of PostgreSQL here: should it fail, the next grab or reconciliation rebuilds it.
        with contextlib.suppress(RedisUnavailable):
            fn(*args, **kwargs)


def _drop_after_commit(session: Session, *_: Any) -> None:
    session.info.pop(_AFTER_COMMIT, None)
