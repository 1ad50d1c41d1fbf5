"""The engine's hot path in Redis: every counter and window of one decision in ONE Lua call.

Keys of one merchant share the hash tag ``{m<merchant id>}``, so the script runs unchanged on Redis
Cluster. Claim limits (``cap``, ``gap``) are checked first and counted only when every one passes (a
refused claim uses up nothing); ``incr`` keys always count; ``get`` keys are read. A linked group's
counter is named from the member key's value inside the script (same hash tag, hence same slot).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from flask import current_app

from app.queue.queues import get_redis

# KEYS[i] with triples (op, a, b) after ARGV[1] = now in ms — all of them in ARGV[2], one per line (one
# argument to encode and send instead of ~50: the client's packing was a third of the call's CPU).
#   cap   a=limit (0: uncapped, still counted) b=ttl s   → the count after this claim
#   gap   a=min seconds (0: off)               b=ttl s   → seconds since the last claim (-1: none)
#   group a=limit  b=ttl s, plus the next ARGV = counter key prefix (the group id is appended)
#   incr  a=unused b=ttl s                               → the count after this one
#   member a,b unused, plus the next ARGV = size key prefix  → "<group id>:<size>" (false: alone)
#   get   a,b unused                                     → the value (false when absent)
#   zcount a=window s                                    → members scored within [now - a s, now]
#   rank  a=member b=ttl s  (ZADD NX member now)         → the member's rank by first sight (0-based)
#   sadd  a=member b=ttl s                               → "<1 if new>:<set size>"
#   client (first, a paid order's: who asked to pay it)  → the stored "v2|ip|ip digest|device digest|…"
# After a ``client`` step, "@ip@" / "@dev@" in a key stand for that client's IP / device digest (same hash
# tag, so the same slot); a step whose key names one the client lacks is skipped (false, nothing written).
# A client stored in an older format is answered {{}, {}, raw, 'retry'} before anything is touched.
# FUNCTION defines risk_steps(KEYS, ARGV) (its parameters shadow the script's own): another script can
# run a decision's steps inside its own step over keys of the same hash tag (a pool grab: app.pools.hot).
FUNCTION = """
local function risk_steps(KEYS, ARGV)
local now = tonumber(ARGV[1])
local A = {ARGV[1]}
for field in string.gmatch(ARGV[2], '[^\\n]+') do A[#A + 1] = field end
local out = {}
local failed = {}
local writes = {}
local client = false
local ipd, devd = nil, nil
local a = 2
for i, key in ipairs(KEYS) do
  local op, x, ttl = A[a], tonumber(A[a + 1]), tonumber(A[a + 2])
  a = a + 3
  local skip = false
  if op ~= 'client' then
    if string.find(key, '@ip@', 1, true) then
      if ipd then key = string.gsub(key, '@ip@', ipd) else skip = true end
    end
    if string.find(key, '@dev@', 1, true) then
      if devd then key = string.gsub(key, '@dev@', devd) else skip = true end
    end
  end
  if skip then
    if op == 'group' or op == 'member' then a = a + 1 end
    out[i] = false
  elseif op == 'client' then
    client = redis.call('GET', key)
    if client then
      local v, ip, ipdigest, dev = string.match(client, '^(v2)|([^|]*)|([^|]*)|([^|]*)|')
      if not v then return {{}, {}, client, 'retry'} end
      if ipdigest ~= '' then ipd = ipdigest end
      if dev ~= '' then devd = dev end
    end
    out[i] = client
  elseif op == 'cap' then
    local n = tonumber(redis.call('GET', key) or '0') + 1
    out[i] = n
    if x > 0 and n > x then failed[#failed + 1] = i end
    writes[#writes + 1] = {'cap', key, ttl}
  elseif op == 'gap' then
    local last = redis.call('GET', key)
    local since = -1
    if last then since = math.floor((now - tonumber(last)) / 1000) end
    out[i] = since
    if x > 0 and last and since < x then failed[#failed + 1] = i end
    writes[#writes + 1] = {'gap', key, ttl}
  elseif op == 'group' then
    local prefix = A[a]
    a = a + 1
    local member = redis.call('GET', key)
    out[i] = 0
    if member then
      local gid = string.match(member, '^(%d+)')
      local gkey = prefix .. gid
      local n = tonumber(redis.call('GET', gkey) or '0') + 1
      out[i] = n
      if x > 0 and n > x then failed[#failed + 1] = i end
      writes[#writes + 1] = {'cap', gkey, ttl}
    end
  elseif op == 'member' then
    local prefix = A[a]
    a = a + 1
    local gid = redis.call('GET', key)
    out[i] = false
    if gid then out[i] = redis.call('GET', prefix .. gid) or false end
  elseif op == 'zcount' then
    out[i] = redis.call('ZCOUNT', key, now - x * 1000, now)
  elseif op == 'rank' then
    redis.call('ZADD', key, 'NX', now, A[a - 2])
    redis.call('EXPIRE', key, ttl)
    out[i] = redis.call('ZRANK', key, A[a - 2])
  elseif op == 'sadd' then
    local added = redis.call('SADD', key, A[a - 2])
    redis.call('EXPIRE', key, ttl)
    out[i] = added .. ':' .. redis.call('SCARD', key)
  elseif op == 'incr' then
    out[i] = redis.call('INCR', key)
    redis.call('EXPIRE', key, ttl)
  else
    out[i] = redis.call('GET', key) or false
  end
end
if #failed == 0 then
  for _, w in ipairs(writes) do
    if w[1] == 'cap' then
      redis.call('INCR', w[2])
    else
      redis.call('SET', w[2], now)
    end
    redis.call('EXPIRE', w[2], w[3])
  end
end
return {failed, out, client}
end
"""
_SCRIPT = FUNCTION + "return risk_steps(KEYS, ARGV)\n"


@dataclass
class Step:
    """One key of a decision and what to do with it (see the module docstring)."""

    name: str
    op: str
    key: str
    limit: int = 0
    ttl: int = 0
    prefix: str = ""


@dataclass
class Outcome:
    failed: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    client: str | None = None  # what a ``client`` step read
    retry: bool = False  # that client is in an older format: nothing was done


def key_prefix(merchant_id: int) -> str:
    """``<queue prefix>:risk:{m<id>}``: every key of one merchant in one hash slot."""
    prefix = current_app.extensions["hongli.settings"].queue.prefix
    return f"{prefix}:risk:{{m{merchant_id}}}"


def run(steps: Sequence[Step], now_ms: int, connection: redis.Redis | None = None) -> Outcome:
    """Run ``steps`` as one atomic script (one round trip)."""
    if not steps:
        return Outcome()
    connection = connection or get_redis()
    script = current_app.extensions.get("hongli.risk_script")
    if script is None:
        script = connection.register_script(_SCRIPT)
        current_app.extensions["hongli.risk_script"] = script
    answer = script(keys=[s.key for s in steps], args=arguments(steps, now_ms), client=connection)
    return outcome(steps, answer)


def arguments(steps: Sequence[Step], now_ms: int) -> list[str | int]:
    """The script's ARGV for ``steps`` (their keys, in order, are its KEYS)."""
    argv: list[str | int] = []
    for step in steps:
        argv += [step.op, step.limit, step.ttl]
        if step.op in ("group", "member"):
            argv.append(step.prefix)
    return [now_ms, "\n".join(map(str, argv))]


def outcome(steps: Sequence[Step], answer: Sequence[Any]) -> Outcome:
    """What ``risk_steps`` answered (``{failed, values[, client[, 'retry']]}``), by step name."""
    failed, values = answer[0], answer[1]
    client = answer[2] if len(answer) > 2 else None
    return Outcome(
        failed=[steps[int(i) - 1].name for i in failed],
        values={
            step.name: (v.decode() if isinstance(v, bytes) else v)
            for step, v in zip(steps, values, strict=False)
        },
        client=client.decode() if isinstance(client, bytes) else client,
        retry=len(answer) > 3,
    )


class MemoryStore:
    """The script's semantics over a dict, for the dry run's replay (no Redis, no TTLs)."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.strings: dict[str, str] = {}
        self.sorted: dict[str, dict[str, int]] = {}
        self.sets: dict[str, set[str]] = {}

    def run(self, steps: Sequence[Step], now_ms: int) -> Outcome:
        out = Outcome()
        writes: list[tuple[str, str]] = []
        for step in steps:
            if step.op == "cap":
                n = self.values.get(step.key, 0) + 1
                out.values[step.name] = n
                if step.limit and n > step.limit:
                    out.failed.append(step.name)
                writes.append(("cap", step.key))
            elif step.op == "gap":
                last = self.values.get(step.key)
                since = -1 if last is None else (now_ms - last) // 1000
                out.values[step.name] = since
                if step.limit and last is not None and since < step.limit:
                    out.failed.append(step.name)
                writes.append(("gap", step.key))
            elif step.op == "member":
                gid = self.strings.get(step.key)
                out.values[step.name] = None if gid is None else self.strings.get(step.prefix + gid)
            elif step.op == "group":
                member = self.strings.get(step.key)
                out.values[step.name] = 0
                if member:
                    gkey = step.prefix + member
                    n = self.values.get(gkey, 0) + 1
                    out.values[step.name] = n
                    if step.limit and n > step.limit:
                        out.failed.append(step.name)
                    writes.append(("cap", gkey))
            elif step.op == "zcount":
                scores = self.sorted.get(step.key, {}).values()
                out.values[step.name] = sum(1 for s in scores if now_ms - step.limit * 1000 <= s <= now_ms)
            elif step.op == "rank":
                ranked = self.sorted.setdefault(step.key, {})
                ranked.setdefault(str(step.limit), now_ms)
                order = sorted(ranked, key=lambda member: (ranked[member], member))
                out.values[step.name] = order.index(str(step.limit))
            elif step.op == "sadd":
                members = self.sets.setdefault(step.key, set())
                added = str(step.limit) not in members
                members.add(str(step.limit))
                out.values[step.name] = f"{int(added)}:{len(members)}"
            elif step.op == "incr":
                self.values[step.key] = self.values.get(step.key, 0) + 1
                out.values[step.name] = self.values[step.key]
            else:
                out.values[step.name] = self.strings.get(step.key, self.values.get(step.key))
        if not out.failed:
            for op, key in writes:
                self.values[key] = self.values.get(key, 0) + 1 if op == "cap" else now_ms
        return out
