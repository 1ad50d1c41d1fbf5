"""The replay's approximations, on the pure simulation: simulated packets, expiry, caps, refunds."""

from __future__ import annotations

from datetime import timedelta

from app.campaigns.simulation import PastOrder, Replay, ratio
from app.core.money import Money
from tests.rebates.builders import NOW, ruleset, two_way
from tests.rebates.builders import rule as make_rule

WORST = 1000 + 10000 + 5000


def past(
    order_id: int, total: int, *, consumer: int = 7, days: float = 0, used: bool = False, refunded: int = 0
) -> PastOrder:
    return PastOrder(
        order_id=order_id,
        consumer_id=consumer,
        total=Money(total),
        paid=Money(total - (1000 if used else 0)),
        refunded=Money(refunded),
        paid_at=NOW + timedelta(days=days),
        used_red_packet=used,
        is_first_paid_order=False,
    )


def test_a_simulated_packet_is_spent_only_by_its_owner_when_a_packet_was_really_spent() -> None:
    replay = Replay(ruleset(two_way()), budget=Money(100000))
    assert [line.kind for line in replay.run(past(1, 20000)).lines] == ["red_packet"]
    assert replay.run(past(2, 6000)).lines == []  # paid without a packet: the simulated one stays
    assert replay.run(past(3, 6000, consumer=8, used=True)).lines == []  # not theirs
    spent = replay.run(past(4, 6000, used=True))
    assert [(line.kind, line.beneficiary, line.amount.fen) for line in spent.lines] == [
        ("red_packet_discount", "merchant", 1000),
        ("rebate", "issuer_merchant", 600),
        ("rebate", "buyer", 300),
    ]
    result = replay.finish(NOW + timedelta(days=1))
    assert (result.total.packets_issued, result.total.packets_redeemed, result.total.booked.fen) == (
        1,
        1,
        1900,
    )
    assert result.budget_end.fen == 100000 - 1900


def test_packets_expire_and_give_back_their_reservation() -> None:
    replay = Replay(ruleset(two_way()), budget=Money(100000))
    replay.run(past(1, 20000))
    replay.run(past(2, 20000, consumer=8, days=10))
    assert replay.budget.fen == 100000 - 2 * WORST
    assert replay.run(past(3, 6000, days=31, used=True)).lines == []  # consumer 7's packet has expired
    assert replay.budget.fen == 100000 - WORST
    result = replay.finish(NOW + timedelta(days=32))
    assert (result.packets_expired, result.packets_live, result.liability_outstanding.fen) == (1, 1, WORST)
    assert replay.finish(NOW + timedelta(days=41)).packets_expired == 2


def test_per_user_caps_accumulate_over_the_replay() -> None:
    rules = ruleset(make_rule("ratio", "ten", rate_bp=1000), caps={"per_user_day_fen": 1500})
    replay = Replay(rules, budget=Money(100000))
    amounts = [
        [line.amount.fen for line in replay.run(past(n, 10000, days=days)).lines]
        for n, days in enumerate([0, 0.01, 0.02, 1], start=1)
    ]
    assert amounts == [[1000], [500], [], [1000]]  # a new China day, a new cap
    assert replay.finish(NOW).skipped == {"cap reached": 1}


def test_refunds_reverse_grants_pro_rata_to_what_was_paid() -> None:
    replay = Replay(ruleset(make_rule("ratio", "ten", rate_bp=1000)), budget=Money(100000))
    replay.run(past(1, 10000, refunded=2500))
    total = replay.finish(NOW).total
    assert (total.booked.fen, total.reversed.fen, total.cost.fen) == (1000, 250, 750)


def test_ratios_are_decimal_strings_rounded_down() -> None:
    assert ratio(3250, 1750) == "1.8571"
    assert ratio(1, 3) == "0.3333"
    assert ratio(-1, 3) == "-0.3334"
    assert ratio(5, 0) is None
