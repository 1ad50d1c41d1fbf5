"""Races on a fission-cash share (one sendgroupredpack per grabbed share), on every engine: two workers
paying the same share at once write one entry and one payout, and two passes of that payout at once send
one bill to WeChat."""

from __future__ import annotations

from functools import partial

import pytest

from jobs.payouts import process_payout
from jobs.pools import pay_cash_share
from tests.pools.fission_helpers import (
    can_send_red_packets,
    fission_pool,
    follower,
    grabbed,
    payouts_of,
    sandbox_packets,
)
from tests.races.conftest import Race

pytestmark = pytest.mark.race


def test_two_workers_paying_one_fission_share_at_once_send_one_bill(race: Race) -> None:
    can_send_red_packets(race)
    pool_id = fission_pool(race, share_fen=300, count=10, fission_count=3)

    def round_(_: int) -> None:
        buyer, openid = follower(race)
        grant_id = grabbed(race, buyer, pool_id)
        # RQ delivers at least once and the sweep may pick the same grant: two workers at once.
        paid = race.race([partial(race.call, pay_cash_share, grant_id)] * 2)
        race.assert_clean(paid)
        assert sum(a.ok and a.value is True for a in paid) == 1, [str(a) for a in paid]
        (payout,) = payouts_of(race, buyer.consumer_id)
        assert payout.group_size == 3 and payout.amount.fen == 300
        assert race.wallet(buyer.consumer_id)["withdrawing"] == 300
        # Two passes of the payout at once: one claims it and sends, the other finds it leased.
        passes = race.race([partial(race.call, process_payout, payout.id)] * 2)
        race.assert_clean(passes)
        outcomes = sorted(str(a.value) for a in passes if a.ok)
        assert outcomes.count("accepted") == 1 and set(outcomes) <= {"accepted", "skipped"}, outcomes
        (packet,) = sandbox_packets(race, openid)
        assert packet["mch_billno"] == payout.bill_no and packet["total_num"] == 3
        assert packet["total_amount"] == 300
        assert race.wallet(buyer.consumer_id) == {"available": 0, "pending": 0, "withdrawing": 0, "debt": 0}

    race.rounds(round_, n=8)
    assert race.violations() == set()
