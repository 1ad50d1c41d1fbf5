"""Risk review races: reviewers approving and rejecting one held reward at once — exactly one decision wins,
and a rejection reverses the held grants exactly once."""

from __future__ import annotations

import threading
from functools import partial

import pytest
from sqlalchemy import select

from app.audit.service import CLI, Actor
from app.extensions import db
from app.ledger.models import AccountKind
from app.risk import check_claim, review
from app.risk.clients import DEVICE_HEADER
from app.risk.links import group_of
from app.risk.models import HoldStatus, RiskHold
from app.risk.service import update_policy
from jobs.risk import merge_seen
from tests.pools.helpers import crowd
from tests.races.conftest import Answer, Race
from tests.worker import run_jobs

pytestmark = pytest.mark.race

RATIO = {
    "rules": [{"id": "ratio", "kind": "ratio", "priority": 5, "stacking": "combinable", "rate_bp": 1000}]
}
REVIEWER = review.Reviewer(Actor("staff", "reviewer"), None)


def test_approve_and_reject_of_one_hold_at_once_exactly_one_wins(race: Race) -> None:
    campaign_id = race.campaign(RATIO, 200_000)
    with race.context():
        update_policy(merchant_id=race.merchant_id, changes={"enforce": True}, actor=CLI)
        db.session.commit()

    def one_round(round_no: int) -> None:
        buyer = race.buyer()
        order_id, _ = race.register(buyer, 20_000)
        assert race.pay(buyer, order_id).ok
        assert race.user_pays(race.out_trade_nos(order_id)[0]).ok  # no browse/cart trail: the reward is held
        with race.context():
            hold_id = db.session.scalar(select(RiskHold.id).where(RiskHold.order_id == order_id))
        assert hold_id is not None
        budget = race.balance(AccountKind.CAMPAIGN_BUDGET, campaign_id)
        assert race.wallet(buyer.consumer_id)["pending"] == 2000

        approve = partial(
            race.call, review.approve, merchant_id=race.merchant_id, hold_id=hold_id, reviewer=REVIEWER
        )
        reject = partial(
            race.call,
            review.reject,
            merchant_id=race.merchant_id,
            hold_id=hold_id,
            reviewer=REVIEWER,
            reason="r",
        )
        answers: list[Answer] = race.race([approve, reject] * 4)
        race.assert_clean(answers)
        with race.context():
            hold = db.session.get(RiskHold, hold_id)
            assert hold is not None
            status, reversed_fen = hold.status, hold.reversed_fen
        rejected = status is HoldStatus.REJECTED
        busy = [a for a in answers if a.busy]
        assert {
            "winners": sum(a.ok for a in answers),
            "others": sorted({a.code for a in answers if not a.ok and not a.busy}),
            "pending": race.wallet(buyer.consumer_id)["pending"],
            "budget back": race.balance(AccountKind.CAMPAIGN_BUDGET, campaign_id) - budget,
            "reversed": reversed_fen,
        } == {
            "winners": 1,
            "others": ["conflict"] if len(busy) < 7 else [],
            "pending": 0 if rejected else 2000,
            "budget back": 2000 if rejected else 0,
            "reversed": 2000 if rejected else 0,
        }

    race.rounds(one_round, n=8)


def test_policy_changes_at_once_each_make_their_own_version_or_are_refused(race: Race) -> None:
    """Four owners save the policy at once, from no policy yet (the insert) and then from one (the
    conditional UPDATE): every saved change has its own version, the others are 409, nothing is lost."""
    from app.risk.models import RiskPolicy

    def save(limit: int) -> Answer:
        return race.call(
            update_policy, merchant_id=race.merchant_id, changes={"ip_claims_per_day": limit}, actor=CLI
        )

    def one_round(round_no: int) -> None:
        with race.context():
            before = db.session.scalar(
                select(RiskPolicy.version).where(RiskPolicy.merchant_id == race.merchant_id)
            )
        answers: list[Answer] = race.race([partial(save, 5 + n) for n in range(4)])
        race.assert_clean(answers)
        saved = [a for a in answers if a.ok]
        refused = [a for a in answers if not a.ok and not a.busy]
        assert saved and all(a.code == "conflict" for a in refused), [str(a) for a in answers]
        with race.context():
            after = db.session.scalar(
                select(RiskPolicy.version).where(RiskPolicy.merchant_id == race.merchant_id)
            )
        assert after == (before or 0) + len(saved)
        assert sorted(a.value["version"] for a in saved) == list(range((before or 0) + 1, (after or 0) + 1))

    race.rounds(one_round)


def _claim_on(race: Race, consumer_id: int, device: str) -> None:
    """A claim's decision for ``consumer_id`` on ``device``, added to the current session (not committed)."""
    with race.app.test_request_context(headers={DEVICE_HEADER: device}):
        check_claim(merchant_id=race.merchant_id, consumer_id=consumer_id, kind="coupon")


def test_two_new_accounts_on_one_phone_at_once_end_in_one_group(race: Race) -> None:
    first, second = (buyer.consumer_id for buyer in crowd(race, 2))
    device = race.post("/api/mp/v1/risk/device").body["device_token"]

    if race.engine == "sqlite":
        # Writers run one at a time: the second decision sees the first one's link and merges at once.
        with race.context():
            _claim_on(race, first, device)
            db.session.commit()
            _claim_on(race, second, device)
            db.session.commit()
    else:
        # The first decision's transaction is still open while the second is written and committed: neither
        # statement sees the other's link. Redis saw both, so the second queued a merge for after commits.
        with race.context():
            _claim_on(race, first, device)

            def meanwhile() -> None:
                with race.context():
                    _claim_on(race, second, device)
                    db.session.commit()

            other = threading.Thread(target=meanwhile)
            other.start()
            other.join(timeout=30)
            db.session.commit()
        with race.context():
            assert group_of(merchant_id=race.merchant_id, consumer_id=second)[1] == [second]
            assert run_jobs("jobs.risk.merge_seen") == 1
    with race.context():
        assert group_of(merchant_id=race.merchant_id, consumer_id=second)[1] == sorted([first, second])
        assert run_jobs("jobs.risk.merge_seen") == 0


def test_a_merge_whose_other_claim_never_committed_gives_up_quietly(race: Race) -> None:
    (alone,) = (buyer.consumer_id for buyer in crowd(race, 1))
    with race.context():
        assert merge_seen(race.merchant_id, alone, "device", "0" * 32) is False
        assert group_of(merchant_id=race.merchant_id, consumer_id=alone)[1] == [alone]
