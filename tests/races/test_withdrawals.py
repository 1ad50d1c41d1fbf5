"""Withdrawal races: finance approving one withdrawal many times, approve against reject, a daily limit
wanted by twenty requests, and one idempotency key sent ten times at once."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from sqlalchemy import func, select

from app.core.money import Money
from app.extensions import db
from app.ledger.models import AccountKind
from app.payouts.models import Payout
from app.withdrawals.models import Withdrawal
from jobs.payouts import process_payout
from tests.races.conftest import Answer, Buyer, Race

pytestmark = pytest.mark.race

REVIEWED_FEN = 2100  # above the auto-approve maximum the review races set: finance decides
WITHDRAWALS = "/api/mp/v1/withdrawals"
CONSOLE = "/api/console/v1/withdrawals"


def _withdraw(race: Race, buyer: Buyer, amount_fen: int, key: str) -> Answer:
    return race.post(
        WITHDRAWALS, json={"amount_fen": amount_fen, "idempotency_key": key}, headers=race.mp_headers(buyer)
    )


def _under_review(race: Race, fund_fen: int, amount_fen: int) -> tuple[Buyer, int]:
    """A new consumer with ``fund_fen`` available asks to withdraw ``amount_fen``; it waits for review."""
    buyer = race.buyer(fund_fen=fund_fen)
    created = _withdraw(race, buyer, amount_fen, f"w-{race.next()}")
    assert created.status == 201 and created.body["status"] == "pending_review", str(created)
    return buyer, int(created.body["id"])


def _payouts_of(race: Race, withdrawal_id: int) -> list[int]:
    with race.context():
        return list(
            db.session.scalars(
                select(Payout.id)
                .where(Payout.source_type == "withdrawal", Payout.source_id == withdrawal_id)
                .order_by(Payout.id)
            )
        )


def _status_of(race: Race, withdrawal_id: int) -> str:
    with race.context():
        withdrawal = db.session.get(Withdrawal, withdrawal_id)
        assert withdrawal is not None
        return withdrawal.status.value


def _two_workers_per_payout(race: Race, payout_ids: list[int]) -> list[Answer]:
    """Each payout's job run by two workers at once (RQ delivers at least once)."""
    calls = [partial(race.call, process_payout, pid) for pid in payout_ids for _ in range(2)]
    return race.race(calls) if calls else []


def _user_confirms_every_bill(race: Race, buyer: Buyer) -> None:
    """The user confirms every transfer waiting for them in WeChat (a hostile user takes all they can)."""
    bills = race.sandbox.get("/state/transfer_bills")["transfer_bills"]
    for bill in bills:
        if bill["openid"] == buyer.openid and bill["state"] == "WAIT_USER_CONFIRM":
            race.sandbox.post(f"/transfer-bills/{bill['out_bill_no']}/confirm", {"mchid": race.mchid})


def _paid_by_wechat(race: Race, buyer: Buyer) -> list[int]:
    payouts: list[dict[str, Any]] = race.sandbox.get(f"/payouts?mchid={race.mchid}")["payouts"]
    return [p["amount_fen"] for p in payouts if p["openid"] == buyer.openid and p["paid"]]


def _refusals(answers: list[Answer]) -> list[str]:
    """Every answer that is neither a success, a 409 with the current state, nor SQLite's busy."""
    return [str(a) for a in answers if not (a.ok or a.busy or (a.status == 409 and "status" in a.details))]


def test_eight_approvals_of_one_withdrawal_make_one_payout_paid_once(race: Race) -> None:
    race.configure(withdrawal_auto_approve_max=Money(0))

    def one_round(_: int) -> None:
        buyer, withdrawal_id = _under_review(race, 5000, REVIEWED_FEN)
        # The same consumer's other withdrawal waits for review meanwhile: no second payout may be
        # funded from its money, and finance can still reject it afterwards.
        bystander = _withdraw(race, buyer, REVIEWED_FEN, f"w-{race.next()}")
        assert bystander.status == 201 and bystander.body["status"] == "pending_review", str(bystander)
        in_flight = race.balance(AccountKind.PAYOUTS_IN_FLIGHT)
        settled = race.balance(AccountKind.PAYOUTS_SETTLED)

        answers = race.race([lambda: race.console_post(f"{CONSOLE}/{withdrawal_id}/approve")] * 8)
        race.assert_clean(answers)
        payouts = _payouts_of(race, withdrawal_id)
        # Whatever was created is run: submitted, confirmed by the user, finished — two workers each time.
        first = _two_workers_per_payout(race, payouts)
        _user_confirms_every_bill(race, buyer)
        second = _two_workers_per_payout(race, payouts)
        shown = race.get(f"{WITHDRAWALS}/{withdrawal_id}", headers=race.mp_headers(buyer))
        rejected = race.console_post(f"{CONSOLE}/{bystander.body['id']}/reject", json={"reason": "later"})

        assert {
            "approvals answered 200": sum(a.status == 200 for a in answers),
            "other answers": _refusals(answers),
            "payouts": len(payouts),
            "payout job crashes": [str(a) for a in first + second if a.status >= 500],
            "paid by WeChat (fen)": _paid_by_wechat(race, buyer),
            "wallet": race.wallet(buyer.consumer_id),
            "in flight (delta)": race.balance(AccountKind.PAYOUTS_IN_FLIGHT) - in_flight,
            "settled (delta)": race.balance(AccountKind.PAYOUTS_SETTLED) - settled,
            "shown to the consumer": shown.body.get("status") if shown.ok else str(shown),
            "the other withdrawal rejected": str(rejected),
        } == {
            "approvals answered 200": 1,
            "other answers": [],
            "payouts": 1,
            "payout job crashes": [],
            "paid by WeChat (fen)": [REVIEWED_FEN],
            "wallet": {"available": 5000 - REVIEWED_FEN, "pending": 0, "withdrawing": 0, "debt": 0},
            "in flight (delta)": 0,
            "settled (delta)": REVIEWED_FEN,
            "shown to the consumer": "paid",
            "the other withdrawal rejected": "200",
        }

    race.rounds(one_round)


def test_approve_and_reject_at_once_exactly_one_wins(race: Race) -> None:
    race.configure(withdrawal_auto_approve_max=Money(0))

    def one_round(_: int) -> None:
        buyer, withdrawal_id = _under_review(race, 3000, REVIEWED_FEN)

        def approve() -> Answer:
            return race.console_post(f"{CONSOLE}/{withdrawal_id}/approve")

        def reject() -> Answer:
            return race.console_post(f"{CONSOLE}/{withdrawal_id}/reject", json={"reason": "race"})

        answers = race.race([approve, reject, approve, reject])
        race.assert_clean(answers)
        approvals = sum(a.ok for a in answers[0::2])
        rejections = sum(a.ok for a in answers[1::2])
        state = _status_of(race, withdrawal_id)
        # The money is in a payout or back in available, never both (nor neither).
        in_payout = {
            "payouts": 1,
            "wallet": {
                "available": 3000 - REVIEWED_FEN,
                "pending": 0,
                "withdrawing": REVIEWED_FEN,
                "debt": 0,
            },
        }
        back = {"payouts": 0, "wallet": {"available": 3000, "pending": 0, "withdrawing": 0, "debt": 0}}
        money = {"payouts": len(_payouts_of(race, withdrawal_id)), "wallet": race.wallet(buyer.consumer_id)}

        assert {
            "winners": approvals + rejections,
            "other answers": _refusals(answers),
            "losers told": sorted(
                {str(a.details.get("status")) for a in answers if a.status == 409} - {state}
            ),
            "money": money,
        } == {
            "winners": 1,
            "other answers": [],
            "losers told": [],
            "money": in_payout if state == "approved" else back,
        }, f"withdrawal ended {state}; {approvals} approval(s) and {rejections} rejection(s) succeeded"

    race.rounds(one_round)


LIMIT_FEN, EACH_FEN, REQUESTS = 1000, 100, 20


def test_twenty_withdrawals_against_a_daily_limit_accept_exactly_the_limit(race: Race) -> None:
    race.configure(
        withdrawal_daily_limit=Money(LIMIT_FEN),
        withdrawal_min=Money(EACH_FEN),
        withdrawal_auto_approve_max=Money(0),
    )

    def one_round(_: int) -> None:
        buyer = race.buyer(fund_fen=5000)
        n = race.next()
        answers = race.race(
            [partial(_withdraw, race, buyer, EACH_FEN, f"limit-{n}-{i}") for i in range(REQUESTS)]
        )
        race.assert_clean(answers)
        busy = sum(a.busy for a in answers)
        accepted = sum(a.status == 201 for a in answers)
        with race.context():
            rows = db.session.execute(
                select(func.count(Withdrawal.id), func.coalesce(func.sum(Withdrawal.amount), 0)).where(
                    Withdrawal.consumer_id == buyer.consumer_id
                )
            ).one()
        count, total = rows[0], rows[1]
        total_fen = total.fen if isinstance(total, Money) else int(total)
        expected = min(LIMIT_FEN // EACH_FEN, REQUESTS - busy)  # a busy answer (SQLite) changed nothing

        assert {
            "accepted": accepted,
            "refused with 409 and details": sum(a.status == 409 and bool(a.details) for a in answers),
            "withdrawals (rows, fen)": (count, total_fen),
            "wallet": race.wallet(buyer.consumer_id),
        } == {
            "accepted": expected,
            "refused with 409 and details": REQUESTS - busy - expected,
            "withdrawals (rows, fen)": (expected, expected * EACH_FEN),
            "wallet": {
                "available": 5000 - expected * EACH_FEN,
                "pending": 0,
                "withdrawing": expected * EACH_FEN,
                "debt": 0,
            },
        }

    race.rounds(one_round)


def test_one_idempotency_key_ten_times_at_once_makes_one_withdrawal(race: Race) -> None:
    """Under the default auto-approve maximum the withdrawal is approved at once: one payout too."""

    def one_round(_: int) -> None:
        buyer = race.buyer(fund_fen=3000)
        key = f"same-{race.next()}"
        answers = race.race([lambda: _withdraw(race, buyer, 500, key)] * 10)
        race.assert_clean(answers)
        again = _withdraw(race, buyer, 500, key)  # the client's retry after the storm
        with race.context():
            rows = list(
                db.session.scalars(select(Withdrawal.id).where(Withdrawal.consumer_id == buyer.consumer_id))
            )

        assert {
            "ids answered": sorted({a.body["id"] for a in [*answers, again] if a.ok}),
            # 503 passes assert_clean on SQLite only (busy); a 409 is "the first is still in flight".
            "other answers": sorted({a.status for a in answers} - {200, 201, 409, 503}),
            "successes": sum(a.ok for a in answers) > 0,
            "payouts": len(_payouts_of(race, rows[0])) if len(rows) == 1 else None,
            "wallet": race.wallet(buyer.consumer_id),
        } == {
            "ids answered": rows,
            "other answers": [],
            "successes": True,
            "payouts": 1,
            "wallet": {"available": 2500, "pending": 0, "withdrawing": 500, "debt": 0},
        }

    race.rounds(one_round)
