#!/usr/bin/env python3
"""Race probes for issue 18, against a running ``make run`` (web, worker, WeChat sandbox).

Plain concurrent HTTP, as a hostile client would send it, then the system's own records:

  a  8 concurrent console approvals of one withdrawal -> one payout, the sandbox pays it once
  b  two concurrent ``pay`` calls, two orders, one red_packet_id -> one discounted order, one 409
  c  20 concurrent withdrawals of 100 fen against a 1000 fen daily limit -> exactly 1000 fen accepted
  d  10 concurrent withdrawal requests with one idempotency key -> one withdrawal, no 5xx

Race a keeps a second withdrawal of the same consumer under review, the money a duplicate payout would
draw on (issue 18 saw WeChat pay such a withdrawal twice); afterwards that one must still be rejectable.
Each payout the worker sends is confirmed at the sandbox as the consumer would, and the sandbox's own
payout list and the consumer's wallet are compared with the withdrawal.

No answer may be a 5xx other than ``503 database_busy`` with ``Retry-After`` (counted separately; such a
request is retried after Retry-After, as a well-behaved client would). Afterwards ``flask --app wsgi
ledger check`` and ``payouts check`` must be clean. Exit status: 0 all passed, 1 a race or check failed,
2 the setup failed.

Usage (with the repository's virtualenv, which has requests and rq, while ``make run`` is up):

    .venv/bin/python scripts/probe-races.py [--rounds 5] [--races abcd] [--repo PATH]

A run of 5 rounds takes about 35 s. Each round logs in 4 fresh consumers and the login limit is 30 per
minute per client IP, so from about 8 rounds on the setup waits out 429s (20 rounds: ~3.5 minutes).

Setup goes through public surfaces only: the console API (owner login + CSRF) sets the merchant's
payout policy (daily limit 1000 fen, auto-approve max 0 so every withdrawal waits for review, fee 0,
rail transfer_bill, after-sales window 0 days), creates, funds and activates a campaign and issues red
packets; ``flask budgets deposit`` puts money in the merchant budget (no API does); consumers log in
through the sandbox's login-code route; the shop API registers orders and reports them received; the
sandbox's admin routes pay them. Consumers get money through the real loop: each funded consumer's paid
order earns a ``fixed`` rebate, which settles once the order is received. No CLI or API settles on
demand, so by default the script enqueues the very job the worker's periodic ``settle-rebates`` sweep
enqueues every ten minutes (``jobs.rebates.settle_rebates``) on the worker's sweeps queue;
``--settle wait`` waits for the sweep instead. The merchant's previous policy is restored and the
campaign ended at the end. Each run uses fresh consumers, so runs can be repeated on one database.
"""

# A command-line tool: it prints its report and runs the flask CLI of the checkout under test.
# ruff: noqa: T201, S603

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 60  # seconds per HTTP request; the SQLite busy timeout is 15 s
BUSY_RETRIES = 8


class SetupError(RuntimeError):
    """The probe could not prepare a race (not a finding about the race itself)."""


# ---------------------------------------------------------------- HTTP with a record of every answer


@dataclass
class Answer:
    status: int  # 0: no answer (connection error, timeout)
    body: Any
    headers: Mapping[str, str]  # case-insensitive (requests' own)
    busy_retries: int = 0
    sent: float = 0.0  # time.monotonic() when the (first) request was sent
    answered: float = 0.0

    @property
    def code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return str(self.body["error"].get("code"))
        return None

    def short(self) -> str:
        return f"{self.status} {self.code or ''}".strip()


@dataclass
class Tally:
    """Every answer the probe saw: 503 database_busy (allowed, retried) and any other 5xx (a failure)."""

    busy: int = 0
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, label: str, answer: Answer) -> None:
        with self.lock:
            if answer.status == 503 and answer.code == "database_busy" and answer.headers.get("Retry-After"):
                self.busy += 1
            elif answer.status >= 500 or answer.status == 0:
                self.unexpected.append(f"{label}: {answer.status} {json.dumps(answer.body)[:300]}")


TALLY = Tally()
_THREAD = threading.local()  # a race thread's own keep-alive session, connected before the barrier


def http(
    method: str,
    url: str,
    *,
    label: str,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
) -> Answer:
    """One logical request: retried after Retry-After while the answer is 503 database_busy."""
    retries = 0
    sent = time.monotonic()
    while True:
        try:
            response = getattr(_THREAD, "session", requests).request(
                method, url, json=json_body, headers=headers, cookies=cookies, timeout=TIMEOUT
            )
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text[:500]
            answer = Answer(response.status_code, body, response.headers, retries, sent)
        except requests.RequestException as exc:
            answer = Answer(0, f"{type(exc).__name__}: {exc}", {}, retries, sent)
        answer.answered = time.monotonic()
        TALLY.note(f"{method} {url.split('//', 1)[-1].split('/', 1)[-1]} ({label})", answer)
        busy = answer.status == 503 and answer.code == "database_busy"
        if not busy or retries >= BUSY_RETRIES:
            return answer
        retries += 1
        time.sleep(float(answer.headers.get("Retry-After") or 1))


def expect(answer: Answer, *statuses: int, what: str) -> Any:
    if answer.status not in statuses:
        raise SetupError(f"{what}: expected {statuses}, got {answer.status} {json.dumps(answer.body)[:400]}")
    return answer.body


def at_once(calls: list[Callable[[], Answer]], warm_url: str) -> list[Answer]:
    """Run the calls in threads released together by a barrier; answers in call order. Each thread
    first opens its own keep-alive connection (GET ``warm_url``), so the race is only the requests."""
    barrier = threading.Barrier(len(calls))
    answers: list[Answer | None] = [None] * len(calls)

    def run(i: int) -> None:
        with requests.Session() as session:
            with contextlib.suppress(requests.RequestException):  # the race request will report it
                session.get(warm_url, timeout=TIMEOUT)
            _THREAD.session = session
            barrier.wait()
            answers[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [a for a in answers if a is not None]


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise SetupError(f"timed out after {timeout:.0f} s waiting for {what}")


def now_iso(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + delta).isoformat(timespec="seconds")


# ---------------------------------------------------------------- the three callers


class Console:
    """The merchant owner in the console: session cookie + X-CSRF-Token + X-Hongli-Merchant."""

    def __init__(self, base: str, email: str, password: str) -> None:
        self.base = base
        login = http(
            "POST",
            f"{base}/api/console/v1/session",
            label="console login",
            json_body={"email": email, "password": password},
        )
        body = expect(login, 200, what="console login")
        self.cookie = {"session": _cookie(login.headers, "session")}
        self.csrf = body["csrf_token"]
        if not body["memberships"]:
            raise SetupError(f"{email} has no role at any merchant")
        self.merchant = body["memberships"][0]["merchant"]

    def headers(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf, "X-Hongli-Merchant": self.merchant}

    def call(self, method: str, path: str, json_body: Any = None, label: str = "console") -> Answer:
        return http(
            method,
            f"{self.base}/api/console/v1{path}",
            label=label,
            json_body=json_body,
            headers=self.headers(),
            cookies=self.cookie,
        )


def _cookie(headers: Mapping[str, str], name: str) -> str:
    match = re.search(rf"(?:^|[\s,]){name}=([^;,\s]+)", headers.get("Set-Cookie", ""))
    if match:
        return match.group(1)
    raise SetupError(f"no {name} cookie in the login answer")


class Shop:
    def __init__(self, base: str, key: str) -> None:
        self.base, self.key = base, key

    def call(self, method: str, path: str, json_body: Any = None, label: str = "shop") -> Answer:
        return http(
            method,
            f"{self.base}/api/shop/v1{path}",
            label=label,
            json_body=json_body,
            headers={"Authorization": f"Bearer {self.key}"},
        )


class Sandbox:
    def __init__(self, base: str) -> None:
        self.base = base

    def call(self, method: str, path: str, json_body: Any = None, label: str = "sandbox") -> Answer:
        return http(method, f"{self.base}/_sandbox{path}", label=label, json_body=json_body)


@dataclass
class Consumer:
    tag: str
    id: int
    openid: str
    headers: dict[str, str]

    def call(self, base: str, method: str, path: str, json_body: Any = None, label: str = "mp") -> Answer:
        return http(method, f"{base}/api/mp/v1{path}", label=label, json_body=json_body, headers=self.headers)


# ---------------------------------------------------------------- setup


@dataclass
class World:
    base: str
    console: Console
    shop: Shop
    sandbox: Sandbox
    run: str
    mp_appid: str
    mchid: str
    campaign_id: int = 0
    packet_rule: str = "probe-packet"


FUNDED_FEN = 3000  # each funded consumer's settled rebate: more than any race can take
PACKET_FACE_FEN = 500
PACKET_MIN_SPEND_FEN = 1000
PACKET_ORDER_FEN = 2000


def read_credentials(path: Path) -> tuple[str, str, str]:
    email = password = key = ""
    for line in path.read_text().splitlines():
        if line.startswith("console login:"):
            email, password = (s.strip() for s in line.split(":", 1)[1].split(" / ", 1))
        elif line.startswith("shop API key:"):
            key = line.split(":", 1)[1].strip()
    if not (email and password and key):
        raise SetupError(f"{path}: expected 'console login: EMAIL / PASSWORD' and 'shop API key: KEY'")
    return email, password, key


def flask_cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(repo / ".venv/bin/flask"), "--app", "wsgi", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )


def new_consumer(world: World, tag: str) -> Consumer:
    user = expect(
        world.sandbox.call("POST", "/users", {"nickname": f"probe {world.run} {tag}"}),
        201,
        what="sandbox user",
    )
    for _ in range(10):
        code = expect(
            world.sandbox.call("POST", f"/users/{user['id']}/login-code", {"appid": world.mp_appid}),
            200,
            201,
            what="login code",
        )
        login = http(
            "POST",
            f"{world.base}/api/mp/v1/login",
            label="mp login",
            json_body={"appid": world.mp_appid, "code": code["code"]},
        )
        if login.status == 429:  # login attempts per IP per minute: wait as told
            time.sleep(float(login.headers.get("Retry-After") or 10))
            continue
        body = expect(login, 200, what="mini-program login")
        return Consumer(
            tag=tag,
            id=body["user"]["id"],
            openid=code["openid"],
            headers={"Authorization": f"Bearer {body['token']}", "X-WX-AppId": world.mp_appid},
        )
    raise SetupError("mini-program login kept answering 429")


def register_order(world: World, consumer: Consumer, out_no: str, total_fen: int) -> dict[str, Any]:
    order: dict[str, Any] = expect(
        world.shop.call(
            "POST",
            "/orders",
            {
                "out_order_no": out_no,
                "consumer": {"id": consumer.id},
                "total_fen": total_fen,
                "items": [{"sku": "probe", "name": "probe tea", "quantity": 1, "unit_price_fen": total_fen}],
            },
        ),
        200,
        201,
        what=f"register order {out_no}",
    )
    return order


def sandbox_trade_no(world: World, prepay_package: str) -> str:
    prepay_id = prepay_package.split("=", 1)[-1]
    orders = expect(world.sandbox.call("GET", "/state/orders"), 200, what="sandbox orders")["orders"]
    for order in orders:
        if order.get("prepay_id") == prepay_id:
            return str(order["out_trade_no"])
    raise SetupError(f"the sandbox has no order with prepay_id {prepay_id}")


def pay_in_sandbox(world: World, consumer: Consumer, order_id: int, payment: dict[str, Any]) -> None:
    """The consumer pays the prepared JSAPI order at WeChat; Hongli learns it by notification (or confirm)."""
    out_trade_no = sandbox_trade_no(world, payment["payment"]["package"])
    expect(
        world.sandbox.call("POST", f"/transactions/{out_trade_no}/pay", {"mchid": world.mchid}),
        200,
        what=f"sandbox pay {out_trade_no}",
    )

    def paid() -> bool:
        order = consumer.call(world.base, "GET", f"/orders/{order_id}").body
        if isinstance(order, dict) and order.get("status") == "paid":
            return True
        consumer.call(world.base, "POST", f"/orders/{order_id}/confirm")
        return False

    wait_for(f"order {order_id} paid", paid, timeout=60)


def fund_consumer(world: World, consumer: Consumer) -> None:
    """A paid, received order that earns the campaign's fixed rebate (settled later)."""
    out_no = f"probe-{world.run}-{consumer.tag}-fund"
    order = register_order(world, consumer, out_no, FUNDED_FEN)
    payment = expect(consumer.call(world.base, "POST", f"/orders/{order['id']}/pay", {}), 200, what="pay")
    pay_in_sandbox(world, consumer, order["id"], payment)
    expect(
        world.shop.call("POST", f"/orders/{out_no}/events", {"type": "received", "occurred_at": now_iso()}),
        200,
        what="order received",
    )


def settle(world: World, repo: Path, mode: str, funded: list[Consumer]) -> None:
    if mode == "enqueue":
        settings = subprocess.run(
            [
                str(repo / ".venv/bin/python"),
                "-c",
                "from app.settings import load_settings; s = load_settings(); print(s.redis.url, s.queue.prefix)",
            ],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        import redis
        from rq import Queue

        queue = Queue(f"{settings[1]}-sweeps", connection=redis.Redis.from_url(settings[0]))
        queue.enqueue("jobs.rebates.settle_rebates", description=f"probe-races {world.run}: settle now")

    def all_available() -> bool:
        return all(
            consumer.call(world.base, "GET", "/wallet").body.get("available_fen", 0) >= FUNDED_FEN
            for consumer in funded
        )

    wait_for("the rebates to settle", all_available, timeout=60 if mode == "enqueue" else 660, interval=2)


def setup(args: argparse.Namespace) -> tuple[World, dict[str, Any], dict[str, list[Consumer]]]:
    email, password, key = read_credentials(args.credentials)
    console = Console(args.base, email, password)
    run = datetime.now(UTC).strftime("%m%d%H%M%S") + uuid.uuid4().hex[:4]
    profile = expect(console.call("GET", "/merchant"), 200, what="merchant profile")
    world = World(
        base=args.base,
        console=console,
        shop=Shop(args.base, key),
        sandbox=Sandbox(args.sandbox),
        run=run,
        mp_appid=profile["mp_appid"],
        mchid=profile["mchid"],
    )
    try:
        return world, profile, prepare(args, world)
    except BaseException:
        teardown(world, profile)
        raise


def prepare(args: argparse.Namespace, world: World) -> dict[str, list[Consumer]]:
    """Merchant policy, budget, an active campaign and fresh consumers (funded where a race needs it)."""
    console = world.console
    run = world.run
    expect(
        console.call(
            "PATCH",
            "/merchant",
            {
                "payouts": {
                    "rail": "transfer_bill",
                    "withdrawal_min_fen": 100,
                    "withdrawal_fee_bp": 0,
                    "withdrawal_daily_limit_fen": args.daily_limit,
                    "withdrawal_auto_approve_max_fen": 0,  # every withdrawal waits for review
                },
                "settlement": {"after_sales_window_days": 0},
            },
        ),
        200,
        what="merchant policy",
    )

    rounds, races = args.rounds, args.races
    funded_per_round = sum(r in races for r in "acd")
    budget = rounds * (funded_per_round * FUNDED_FEN + 2 * PACKET_FACE_FEN) + 10_000
    deposit = flask_cli(
        args.repo,
        "budgets",
        "deposit",
        "--merchant",
        console.merchant,
        "--amount-fen",
        str(budget),
        "--key",
        f"probe-{run}-deposit",
    )
    if deposit.returncode != 0:
        raise SetupError(f"flask budgets deposit: {deposit.stdout}{deposit.stderr}")
    rules = {
        "rules": [
            {
                "id": "probe-cash",
                "kind": "fixed",
                "priority": 10,
                "stacking": "combinable",
                "amount_fen": FUNDED_FEN,
                "min_order_fen": FUNDED_FEN,
            },
            {
                "id": world.packet_rule,
                "kind": "two_way",
                "priority": 20,
                "stacking": "combinable",
                "trigger_min_order_fen": 100_000_000,
                "packet_value_fen": PACKET_FACE_FEN,
                "packet_min_spend_fen": PACKET_MIN_SPEND_FEN,
                "packet_valid_days": 1,
                "issuer_rate_bp": 0,
                "buyer_rate_bp": 0,
                "max_order_fen": 100_000,
            },
        ]
    }
    campaign = expect(
        console.call(
            "POST",
            "/campaigns",
            {
                "name": f"probe-races {run}",
                "starts_at": now_iso(timedelta(minutes=-1)),
                "ends_at": now_iso(timedelta(days=2)),
                "rules": rules,
            },
        ),
        201,
        what="create campaign",
    )
    world.campaign_id = campaign["id"]
    expect(
        console.call(
            "POST",
            f"/campaigns/{world.campaign_id}/fund",
            {
                "amount_fen": budget,
                "source": "merchant",
                "idempotency_key": f"probe-{run}-fund",
            },
        ),
        200,
        201,
        what="fund campaign",
    )
    status = expect(
        console.call("POST", f"/campaigns/{world.campaign_id}/status", {"to": "active"}), 200, what="activate"
    )
    if status["status"] != "active":
        raise SetupError(f"campaign is {status['status']}, not active")

    people: dict[str, list[Consumer]] = {race: [] for race in races}
    funded: list[Consumer] = []
    for n in range(rounds):
        for race in races:
            consumer = new_consumer(world, f"{race}{n + 1}")
            people[race].append(consumer)
            if race in "acd":
                fund_consumer(world, consumer)
                funded.append(consumer)
    if funded:
        settle(world, args.repo, args.settle, funded)
    return people


def teardown(world: World, profile: dict[str, Any]) -> None:
    """End the probe's campaign and put the merchant's policy back as it was."""
    if world.campaign_id:
        ended = world.console.call("POST", f"/campaigns/{world.campaign_id}/status", {"to": "ended"})
        if ended.status != 200:
            print(f"warning: could not end campaign {world.campaign_id}: {ended.short()}", file=sys.stderr)
    # GET /merchant shows a 0 fen amount as null (Money(0) is falsy there), and PATCH refuses null.
    money = ("withdrawal_min_fen", "withdrawal_daily_limit_fen", "withdrawal_auto_approve_max_fen")
    restored = world.console.call(
        "PATCH",
        "/merchant",
        {
            "payouts": {"rail": profile["payout_rail"], "withdrawal_fee_bp": profile["withdrawal_fee_bp"]}
            | {key: profile[key] or 0 for key in money},
            "settlement": {"after_sales_window_days": profile["after_sales_window_days"]},
        },
    )
    if restored.status != 200:
        print(
            f"warning: could not restore the merchant's policy: {restored.short()} {restored.body}",
            file=sys.stderr,
        )


# ---------------------------------------------------------------- the races


@dataclass
class Result:
    race: str
    round: int
    ok: bool
    detail: str
    busy: int = 0
    problems: list[str] = field(default_factory=list)


def statuses(answers: list[Answer]) -> str:
    """Answers by status and error code, and whether every request was sent before the first answer."""
    counts = Counter(a.short() for a in answers)
    first_answer = min(a.answered for a in answers)
    early = sum(a.sent < first_answer for a in answers)
    spread = (max(a.sent for a in answers) - min(a.sent for a in answers)) * 1000
    return " ".join(f"{k}×{v}" for k, v in sorted(counts.items())) + (
        f" [{early}/{len(answers)} sent before the first answer; all within {spread:.0f} ms]"
    )


def busy_of(answers: Iterable[Answer]) -> int:
    return sum(a.busy_retries for a in answers)


def bad_5xx(answers: Iterable[Answer]) -> list[str]:
    return [
        f"answer {a.status} {json.dumps(a.body)[:200]}" for a in answers if a.status >= 500 or a.status == 0
    ]


def wallet(world: World, consumer: Consumer) -> dict[str, int]:
    balances: dict[str, int] = expect(consumer.call(world.base, "GET", "/wallet"), 200, what="wallet")
    return balances


def race_a(world: World, consumer: Consumer, n: int, args: argparse.Namespace) -> Result:
    """8 concurrent approvals of one withdrawal under review, while a second withdrawal of the same
    consumer also waits for review (money a second payout could wrongly draw on, as in issue 18)."""
    amount = args.approve_amount
    before = wallet(world, consumer)
    target, decoy = (
        expect(
            consumer.call(
                world.base, "POST", "/withdrawals", {"amount_fen": fen, "idempotency_key": f"a{n}-{kind}"}
            ),
            201,
            what=f"{kind} withdrawal for review",
        )
        for kind, fen in (("target", amount), ("decoy", args.decoy_amount))
    )
    for w in (target, decoy):
        if w["status"] != "pending_review":
            raise SetupError(f"withdrawal {w['id']} is {w['status']}, not pending_review")
    wid = target["id"]
    answers = at_once(
        [
            (lambda: world.console.call("POST", f"/withdrawals/{wid}/approve", label="race a approve"))
            for _ in range(args.approvals)
        ],
        f"{world.base}/healthz",
    )
    problems = bad_5xx(answers)
    won = [a for a in answers if a.status == 200]
    if len(won) != 1:
        problems.append(f"{len(won)} approvals answered 200 (want 1)")
    others = [a.short() for a in answers if a.status not in (200, 409)]
    if others:
        problems.append(f"answers other than 200/409: {others}")

    def payouts_of_withdrawal() -> list[dict[str, Any]]:
        listed = expect(world.console.call("GET", "/payouts"), 200, what="payouts")
        return [p for p in listed if p["source_type"] == "withdrawal" and p["source_id"] == wid]

    # The worker takes every payout of the withdrawal as far as it goes; the consumer confirms every
    # transfer WeChat asks them to (wx.requestMerchantTransfer). Done once the first payout finished and
    # nothing else moved for --settle-seconds.
    payouts = payouts_of_withdrawal()
    confirmed: set[str] = set()
    if not payouts:
        problems.append(f"no payout for withdrawal {wid}")
    else:
        first_id = min(p["id"] for p in payouts)
        deadline = time.monotonic() + args.payout_timeout
        quiet_since: float | None = None
        while True:
            payouts = payouts_of_withdrawal()
            for p in payouts:
                waiting = p["status"] == "accepted" and p["wechat_state"] == "WAIT_USER_CONFIRM"
                if waiting and p["bill_no"] not in confirmed:
                    expect(
                        world.sandbox.call("POST", f"/transfer-bills/{p['bill_no']}/confirm", {}),
                        200,
                        what=f"confirm {p['bill_no']}",
                    )
                    confirmed.add(p["bill_no"])
                    quiet_since = None
            first = next(p for p in payouts if p["id"] == first_id)
            if first["status"] in ("succeeded", "failed"):
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= args.settle_seconds:
                    break
            if time.monotonic() > deadline:
                problems.append(
                    f"payout {first_id} still {first['status']} after {args.payout_timeout:.0f} s"
                )
                break
            time.sleep(0.5)
        if len(payouts) != 1:
            problems.append(
                f"{len(payouts)} payouts for withdrawal {wid} (want 1): "
                + ", ".join(f"{p['id']} {p['bill_no']} {p['status']}" for p in payouts)
            )
        if first["status"] != "succeeded":
            problems.append(f"payout {first_id} {first['status']}: {first.get('failure_code')}")
    state = expect(world.sandbox.call("GET", f"/payouts?mchid={world.mchid}"), 200, what="sandbox payouts")
    bills = [b for b in state["payouts"] if b["openid"] == consumer.openid]
    paid_fen = sum(b["amount_fen"] for b in bills if b.get("paid"))
    received = int(state["received_fen_by_openid"].get(consumer.openid, 0))
    net = target["net_fen"]
    if len(bills) != 1:
        problems.append(f"the sandbox holds {len(bills)} bills for the consumer (want 1): {bills}")
    if paid_fen != net or received != net:
        problems.append(f"the sandbox paid {paid_fen} fen, the consumer received {received} fen (want {net})")
    view = expect(consumer.call(world.base, "GET", f"/withdrawals/{wid}"), 200, what="withdrawal")
    if view["status"] != "paid":
        problems.append(f"withdrawal {wid} is {view['status']} (want paid)")
    # The other withdrawal is untouched: still under review, and rejecting it returns its money.
    rejected = world.console.call(
        "POST", f"/withdrawals/{decoy['id']}/reject", {"reason": "probe-races: decoy"}, label="race a reject"
    )
    if rejected.status != 200:
        problems.append(f"the consumer's other withdrawal could not be rejected: {rejected.short()}")
    after = wallet(world, consumer)
    want = {"available_fen": before["available_fen"] - amount, "withdrawing_fen": before["withdrawing_fen"]}
    got = {k: after[k] for k in want}
    if got != want:
        problems.append(f"wallet {got}, want {want}")
    detail = (
        f"approve: {statuses(answers)}; payouts={len(payouts)}; sandbox bills={len(bills)} "
        f"paid={paid_fen} received={received} fen (net {net}); other withdrawal reject {rejected.status}; "
        f"wallet avail {before['available_fen']}→{after['available_fen']} withdrawing {after['withdrawing_fen']}"
    )
    return Result("a", n, not problems, detail, busy_of(answers), problems)


def race_b(world: World, consumer: Consumer, n: int, args: argparse.Namespace) -> Result:
    """Two concurrent pay calls, two orders, one red packet."""
    packet = expect(
        world.console.call(
            "POST",
            f"/campaigns/{world.campaign_id}/red-packets",
            {
                "consumer_id": consumer.id,
                "rule_id": world.packet_rule,
                "idempotency_key": f"probe-{world.run}-b{n}",
            },
        ),
        201,
        200,
        what="issue red packet",
    )
    orders = [
        register_order(world, consumer, f"probe-{world.run}-b{n}-{i}", PACKET_ORDER_FEN) for i in (1, 2)
    ]
    answers = at_once(
        [
            partial(
                consumer.call,
                world.base,
                "POST",
                f"/orders/{o['id']}/pay",
                {"red_packet_id": packet["id"]},
                label="race b pay",
            )
            for o in orders
        ],
        f"{world.base}/healthz",
    )
    problems = bad_5xx(answers)
    discounted = [
        (order, a)
        for order, a in zip(orders, answers, strict=True)
        if a.status == 200 and a.body.get("discount_fen") == PACKET_FACE_FEN
    ]
    undiscounted_ok = [
        a for a in answers if a.status == 200 and a.body.get("discount_fen") != PACKET_FACE_FEN
    ]
    refused = [a for a in answers if a.status == 409]
    if len(discounted) != 1 or len(refused) != 1:
        problems.append(f"{len(discounted)} discounted, {len(refused)} × 409 (want 1 and 1)")
    if undiscounted_ok:
        problems.append(f"{len(undiscounted_ok)} pay answer(s) 200 without the discount")
    # The consumer pays every order the server priced (with or without the packet) at WeChat.
    for order, answer in zip(orders, answers, strict=True):
        if answer.status == 200:
            pay_in_sandbox(world, consumer, order["id"], answer.body)
    mine = expect(consumer.call(world.base, "GET", "/red-packets"), 200, what="red packets")
    packet_now = next(p for p in mine if p["id"] == packet["id"])
    packet_state = f"{packet_now['status']}@order {packet_now.get('order_id')}"
    if len(discounted) == 1:
        winner = discounted[0][0]
        if packet_now["status"] != "redeemed" or packet_now.get("order_id") != winner["id"]:
            problems.append(f"red packet {packet_state} (want redeemed@order {winner['id']})")
    views = [
        expect(consumer.call(world.base, "GET", f"/orders/{o['id']}"), 200, what="order") for o in orders
    ]
    order_states = ", ".join(f"{v['status']}/discount {v['discount_fen']}" for v in views)
    paid_with_discount = [v for v in views if v["status"] == "paid" and v["discount_fen"]]
    if len(paid_with_discount) > 1:
        problems.append("both orders paid with the discount")
    detail = f"pay: {statuses(answers)}; orders: {order_states}; packet {packet_state}"
    return Result("b", n, not problems, detail, busy_of(answers), problems)


def race_c(world: World, consumer: Consumer, n: int, args: argparse.Namespace) -> Result:
    """20 concurrent withdrawals of 100 fen against the daily limit."""
    before = wallet(world, consumer)
    answers = at_once(
        [
            partial(
                consumer.call,
                world.base,
                "POST",
                "/withdrawals",
                {"amount_fen": args.limit_amount, "idempotency_key": f"c{n}-{i}"},
                label="race c withdraw",
            )
            for i in range(args.limit_requests)
        ],
        f"{world.base}/healthz",
    )
    problems = bad_5xx(answers)
    accepted = sum(a.body["amount_fen"] for a in answers if a.status == 201)
    others = [a.short() for a in answers if a.status not in (201, 409)]
    if others:
        problems.append(f"answers other than 201/409: {others}")
    listed = expect(consumer.call(world.base, "GET", "/withdrawals"), 200, what="withdrawals")
    live = sum(w["amount_fen"] for w in listed if w["status"] != "rejected")
    after = wallet(world, consumer)
    if accepted != args.daily_limit or live != args.daily_limit:
        problems.append(
            f"accepted {accepted} fen, withdrawals on record {live} fen (want {args.daily_limit})"
        )
    if after["withdrawing_fen"] - before["withdrawing_fen"] != args.daily_limit:
        problems.append(f"withdrawing grew by {after['withdrawing_fen'] - before['withdrawing_fen']} fen")
    if before["available_fen"] - after["available_fen"] != args.daily_limit:
        problems.append(f"available fell by {before['available_fen'] - after['available_fen']} fen")
    detail = (
        f"withdraw: {statuses(answers)}; accepted {accepted} fen, on record {len(listed)} = {live} fen; "
        f"withdrawing {after['withdrawing_fen']} fen"
    )
    return Result("c", n, not problems, detail, busy_of(answers), problems)


def race_d(world: World, consumer: Consumer, n: int, args: argparse.Namespace) -> Result:
    """10 concurrent withdrawal requests with one idempotency key."""
    amount = args.idem_amount
    before = wallet(world, consumer)
    key = f"d{n}-{uuid.uuid4().hex[:8]}"
    answers = at_once(
        [
            (
                lambda: consumer.call(
                    world.base,
                    "POST",
                    "/withdrawals",
                    {"amount_fen": amount, "idempotency_key": key},
                    label="race d withdraw",
                )
            )
            for _ in range(args.idem_requests)
        ],
        f"{world.base}/healthz",
    )
    problems = bad_5xx(answers)
    ids = {a.body["id"] for a in answers if a.status in (200, 201)}
    others = [a.short() for a in answers if a.status not in (200, 201) and a.code != "concurrent_conflict"]
    if others:
        problems.append(f"answers other than 2xx / 409 concurrent_conflict: {others}")
    listed = expect(consumer.call(world.base, "GET", "/withdrawals"), 200, what="withdrawals")
    after = wallet(world, consumer)
    if len(ids) != 1 or len(listed) != 1 or (listed and listed[0]["id"] not in ids):
        problems.append(
            f"withdrawal ids answered {sorted(ids)}, on record {[w['id'] for w in listed]} (want one)"
        )
    if after["withdrawing_fen"] - before["withdrawing_fen"] != amount:
        problems.append(f"withdrawing grew by {after['withdrawing_fen'] - before['withdrawing_fen']} fen")
    detail = (
        f"withdraw: {statuses(answers)}; ids {sorted(ids)}; on record {len(listed)}; "
        f"withdrawing {after['withdrawing_fen']} fen"
    )
    return Result("d", n, not problems, detail, busy_of(answers), problems)


RACES: dict[str, Callable[[World, Consumer, int, argparse.Namespace], Result]] = {
    "a": race_a,
    "b": race_b,
    "c": race_c,
    "d": race_d,
}


def title(race: str, args: argparse.Namespace) -> str:
    return {
        "a": f"a {args.approvals} approvals of one withdrawal",
        "b": "b 2 orders pay with one red packet",
        "c": f"c {args.limit_requests}×{args.limit_amount} fen vs limit {args.daily_limit}",
        "d": f"d {args.idem_requests} requests, one idempotency key",
    }[race]


# ---------------------------------------------------------------- main


def check_cli(repo: Path, *args: str) -> tuple[bool, str]:
    done = flask_cli(repo, *args)
    return done.returncode == 0, (done.stdout + done.stderr).strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--base", default="http://127.0.0.1:8000", help="Hongli's web base URL")
    parser.add_argument("--sandbox", default="http://127.0.0.1:8900", help="the WeChat sandbox base URL")
    parser.add_argument(
        "--repo", type=Path, default=REPO, help="checkout whose make run is up (for flask CLI)"
    )
    parser.add_argument(
        "--credentials", type=Path, default=None, help="default: REPO/instance/demo-credentials.txt"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--races", default="abcd", help="which races, e.g. 'ac'")
    parser.add_argument(
        "--settle",
        choices=["enqueue", "wait"],
        default="enqueue",
        help="enqueue the settle-rebates job now (default) or wait for the 10-minute sweep",
    )
    parser.add_argument("--approvals", type=int, default=8)
    parser.add_argument("--approve-amount", type=int, default=500)
    parser.add_argument(
        "--decoy-amount", type=int, default=500, help="race a: the consumer's other withdrawal under review"
    )
    parser.add_argument("--daily-limit", type=int, default=1000)
    parser.add_argument("--limit-requests", type=int, default=20)
    parser.add_argument("--limit-amount", type=int, default=100)
    parser.add_argument("--idem-requests", type=int, default=10)
    parser.add_argument("--idem-amount", type=int, default=200)
    parser.add_argument("--payout-timeout", type=float, default=120)
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=3,
        help="race a: wait this long after the payout finished (and nothing else moved) before counting",
    )
    args = parser.parse_args(argv)
    args.credentials = args.credentials or args.repo / "instance/demo-credentials.txt"
    args.races = "".join(r for r in "abcd" if r in args.races)
    if args.approve_amount + args.decoy_amount > args.daily_limit or args.idem_amount > args.daily_limit:
        parser.error("the race a and d amounts must fit in the daily limit")
    if args.limit_requests * args.limit_amount <= args.daily_limit:
        parser.error("race c must ask for more than the daily limit")

    started = time.monotonic()
    try:
        world, profile, people = setup(args)
    except Exception as exc:  # SetupError, or an answer of a shape the probe does not know
        print(f"setup failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        for line in TALLY.unexpected:
            print(f"  unexpected answer: {line}", file=sys.stderr)
        return 2
    setup_seconds = time.monotonic() - started
    print(
        f"run {world.run}: setup {setup_seconds:.0f} s (campaign {world.campaign_id}, "
        f"{sum(len(v) for v in people.values())} consumers)",
        flush=True,
    )

    results: list[Result] = []
    try:
        for n in range(1, args.rounds + 1):
            for race in args.races:
                probe = RACES[race]
                try:
                    result = probe(world, people[race][n - 1], n, args)
                except SetupError as exc:
                    result = Result(race, n, False, "could not finish", problems=[str(exc)])
                except Exception as exc:  # an answer of an unexpected shape is a finding too
                    result = Result(race, n, False, "crashed", problems=[f"{type(exc).__name__}: {exc}"])
                results.append(result)
                mark = "PASS" if result.ok else "FAIL"
                print(f"  {race} round {n}: {mark}  {result.detail}", flush=True)
                for problem in result.problems:
                    print(f"      ! {problem}", flush=True)
    finally:
        teardown(world, profile)

    # Let the worker finish whatever the races queued before the checkers look.
    time.sleep(args.settle_seconds)
    ledger_ok, ledger_out = check_cli(args.repo, "ledger", "check")
    payouts_ok, payouts_out = check_cli(args.repo, "payouts", "check")
    elapsed = time.monotonic() - started

    print()
    print(f"{'race':<40} {'round':>5}  {'result':<6} {'503 busy':>8}  counts")
    for r in results:
        print(
            f"{title(r.race, args):<40} {r.round:>5}  {'PASS' if r.ok else 'FAIL':<6} {r.busy:>8}  {r.detail}"
        )
    print()
    no_5xx = not TALLY.unexpected
    print(
        f"{'no 5xx other than 503 database_busy':<40} {'':>5}  {'PASS' if no_5xx else 'FAIL':<6} "
        f"{TALLY.busy:>8}  (503 database_busy answers with Retry-After, all requests: {TALLY.busy})"
    )
    for line in TALLY.unexpected:
        print(f"      ! {line}")
    print(
        f"{'flask ledger check':<40} {'':>5}  {'PASS' if ledger_ok else 'FAIL':<6} {'':>8}  "
        f"{ledger_out.splitlines()[-1] if ledger_out else ''}"
    )
    if not ledger_ok:
        print("\n".join(f"      ! {line}" for line in ledger_out.splitlines()))
    print(
        f"{'flask payouts check':<40} {'':>5}  {'PASS' if payouts_ok else 'FAIL':<6} {'':>8}  "
        f"{payouts_out.splitlines()[-1] if payouts_out else ''}"
    )
    if not payouts_ok:
        print("\n".join(f"      ! {line}" for line in payouts_out.splitlines()))
    failed = [r for r in results if not r.ok]
    ok = not failed and no_5xx and ledger_ok and payouts_ok
    print()
    print(
        f"{'ALL PASS' if ok else 'FAIL'}: {len(results) - len(failed)}/{len(results)} race rounds passed; "
        f"{TALLY.busy} × 503 database_busy; setup {setup_seconds:.0f} s, total {elapsed:.0f} s"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
