"""docs/quickstart.md, as written, against a `make run` of its own: every marked shell block runs in order in
one bash, each prints what the page says it prints, and every figure it prints is what the ledger holds."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.test_make_run import Run, _kill_everything, _start, _stop, _wait_ready

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "docs" / "quickstart.md"
MARK = "<!-- quickstart -->"
STEP = "@@quickstart-step"

pytestmark = pytest.mark.slow


@dataclass
class Step:
    script: str
    expected: list[str] | None  # the ```text block after it, if any


def steps_of(markdown: str) -> list[Step]:
    """The ```sh block after each marker, with the ```text block that follows it (before the next marker)."""
    found: list[Step] = []
    for part in markdown.split(MARK)[1:]:
        script = re.match(r"\s*```sh\n(.*?)\n```", part, re.S)
        assert script, f"a {MARK} marker must be followed by a ```sh block: {part[:200]!r}"
        rest = part[script.end() :]
        text = re.search(r"```text\n(.*?)\n```", rest, re.S)
        found.append(Step(script.group(1), text.group(1).splitlines() if text else None))
    return found


def _pattern(line: str) -> re.Pattern[str]:
    """A line of the page's output, `…` standing for anything."""
    return re.compile(".*?".join(re.escape(piece) for piece in line.split("…")))


def _matches(expected: list[str], actual: list[str]) -> bool:
    return len(expected) == len(actual) and all(
        _pattern(e).fullmatch(a) for e, a in zip(expected, actual, strict=True)
    )


def test_the_page_has_its_steps() -> None:
    steps = steps_of(QUICKSTART.read_text())
    assert len(steps) >= 10
    assert _matches(["a … c"], ["a bb c"]) and not _matches(["a … c"], ["a bb d"])


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    with (tmp_path / "run.out").open("wb") as log:
        started = _start(tmp_path, "qs", log)
        try:
            yield started
        finally:
            _kill_everything(started)


def _walk(run: Run, tmp_path: Path) -> list[list[str]]:
    """Run the page's blocks in one bash, as a reader pasting them would; the output of each block."""
    steps = steps_of(QUICKSTART.read_text())
    script = "set -eo pipefail\n" + "".join(f"echo {STEP}\n{step.script}\n" for step in steps)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HONGLI_")} | {
        "HONGLI_CONFIG": str(tmp_path / "empty.toml"),
        "INSTANCE": str(run.instance),
    }
    done = subprocess.run(  # noqa: S603 - bash running our own documentation
        ["bash", "-c", script],  # noqa: S607
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
    outputs = [chunk.splitlines() for chunk in done.stdout.split(f"{STEP}\n")[1:]]
    assert len(outputs) == len(steps), done.stdout
    for n, (step, actual) in enumerate(zip(steps, outputs, strict=True), 1):
        expected = step.expected or []
        assert _matches(expected, actual), (
            f"block {n} printed\n" + "\n".join(actual) + "\nwhere the page says\n" + "\n".join(expected)
        )
    return outputs


def _json_lines(outputs: list[list[str]]) -> list[dict[str, Any]]:
    found = []
    for lines in outputs:
        for line in lines:
            if line.startswith("{"):
                found.append(json.loads(line))
    return found


def _one(rows: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    return [row for row in rows if set(keys) <= row.keys()]


def test_quickstart_as_written(run: Run, tmp_path: Path) -> None:
    _wait_ready(run, time.monotonic() + 50)
    # make run's banner points here, with the line to paste first.
    assert f"docs/quickstart.md: in another terminal, INSTANCE={run.instance.resolve()} " in run.text()
    outputs = _walk(run, tmp_path)
    printed = _json_lines(outputs)

    db = sqlite3.connect(f"file:{run.instance / 'hongli.db'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row

    def balance(owner_type: str, owner_id: int, kind: str) -> int:
        row = db.execute(
            "SELECT balance FROM ledger_accounts WHERE owner_type = ? AND owner_id = ? AND kind = ?",
            (owner_type, owner_id, kind),
        ).fetchone()
        return int(row["balance"]) if row else 0

    # The orders: what the page printed for each is the order row.
    for shown in _one(printed, "id", "status", "total_fen", "paid_fen"):
        order = db.execute("SELECT * FROM orders WHERE id = ?", (shown["id"],)).fetchone()
        assert (order["status"], order["total"], order["paid_amount"]) == (
            shown["status"],
            shown["total_fen"],
            shown["paid_fen"],
        )
        assert order["discount"] == shown.get("discount_fen", 0)
    (first, second) = _one(printed, "id", "status", "total_fen", "paid_fen")
    assert (first["total_fen"], second["total_fen"], second["paid_fen"]) == (20000, 5000, 4000)

    # The red packet: issued by the first order, redeemed by the second.
    (packet_shown,) = _one(printed, "face_value_fen", "min_spend_fen")
    packet = db.execute("SELECT * FROM red_packets WHERE id = ?", (packet_shown["id"],)).fetchone()
    assert (packet["face_value"], packet["min_spend"]) == (1000, 5000)
    assert (packet["source_order_id"], packet["order_id"], packet["status"]) == (
        first["id"],
        second["id"],
        "redeemed",
    )

    # The grants of the second order, as printed, are the rebate_grants rows: 10 % issuer, 5 % buyer.
    shown_grants = _one(printed, "beneficiary", "amount_fen", "basis", "status")
    rows = db.execute(
        "SELECT * FROM rebate_grants WHERE order_id = ? ORDER BY id", (second["id"],)
    ).fetchall()
    assert [(g["beneficiary"], g["amount_fen"], g["basis"]) for g in shown_grants] == [
        (row["beneficiary"], row["amount"], row["basis"]) for row in rows
    ]
    printed_grants = {g["beneficiary"]: g["amount_fen"] for g in shown_grants}
    assert printed_grants == {"red_packet_discount": 1000, "issuer_merchant": 500, "buyer": 250}
    buyer_grant = next(row for row in rows if row["beneficiary"] == "buyer")
    assert buyer_grant["status"] == "available" and buyer_grant["settled_at"] is not None
    consumer = buyer_grant["consumer_id"]
    assert db.execute("SELECT COUNT(*) FROM rebate_grants").fetchone()[0] == 3

    # The campaign's figures are its ledger accounts and grants.
    (stats,) = _one(printed, "booked_fen", "budget_remaining_fen")
    campaign = rows[0]["campaign_id"]
    assert stats["booked_fen"] == sum(row["amount"] for row in rows) == 1750
    assert stats["budget_remaining_fen"] == balance("campaign", campaign, "campaign_budget") == 100000 - 1750
    assert stats["budget_reserved_fen"] == balance("campaign", campaign, "campaign_reserved") == 0
    funded = _one(printed, "budget_remaining_fen", "budget_reserved_fen", "id")
    assert funded[0]["budget_remaining_fen"] == 100000

    # The merchant's money: deposited, all given to the campaign, and what it earned on the second order.
    (deposit,) = _one(printed, "amount_fen", "budget_fen", "replayed")
    assert (deposit["amount_fen"], deposit["budget_fen"]) == (100000, 100000)
    merchant = rows[0]["merchant_id"]
    (money,) = _one(printed, "rebate_fen", "budget_fen")
    assert money["budget_fen"] == balance("merchant", merchant, "merchant_budget") == 0
    earned = printed_grants["red_packet_discount"] + printed_grants["issuer_merchant"]
    assert money["rebate_fen"] == balance("merchant", merchant, "merchant_rebate") == earned

    # The wallet: pending 250, then available 250 after settlement, then all paid out.
    wallets = _one(printed, "pending_fen", "available_fen", "withdrawing_fen", "debt_fen")
    assert [(w["pending_fen"], w["available_fen"]) for w in wallets] == [(250, 0), (0, 250), (0, 0)]
    assert wallets[0]["pending_fen"] == wallets[1]["available_fen"] == buyer_grant["amount"]
    for kind in ("pending", "available", "withdrawing", "debt"):
        assert balance("consumer", consumer, f"consumer_{kind}") == wallets[-1][f"{kind}_fen"] == 0

    # The withdrawal and its payout: paid, once, for what the rebate was.
    withdrawal = db.execute("SELECT * FROM withdrawals WHERE consumer_id = ?", (consumer,)).fetchone()
    (requested,) = _one(printed, "id", "status", "amount_fen", "fee_fen", "net_fen")
    assert (requested["id"], requested["amount_fen"], requested["fee_fen"]) == (
        withdrawal["id"],
        withdrawal["amount"],
        withdrawal["fee"],
    )
    (payout_shown,) = _one(printed, "bill_no", "status", "wechat_state", "amount_fen")
    payouts = db.execute("SELECT * FROM payouts WHERE consumer_id = ?", (consumer,)).fetchall()
    assert [(p["bill_no"], p["status"], p["amount"]) for p in payouts] == [
        (payout_shown["bill_no"], payout_shown["status"], payout_shown["amount_fen"])
    ]
    assert payout_shown["status"] == "succeeded" and payout_shown["amount_fen"] == 250
    settled = db.execute("SELECT balance FROM ledger_accounts WHERE kind = 'payouts_settled'").fetchone()
    assert settled["balance"] == 250
    (wechat_shown,) = _one(printed, "key", "status", "amount_fen", "received")
    sandbox = requests.get(f"{run.url(run.sandbox)}/_sandbox/payouts", timeout=5).json()
    assert [(p["key"], p["amount_fen"], p["received"]) for p in sandbox["payouts"]] == [
        (wechat_shown["key"], wechat_shown["amount_fen"], True)
    ]
    assert sandbox["received_fen_by_openid"] == {payouts[0]["openid"]: 250}
    db.close()

    _stop(run, signal.SIGTERM)
