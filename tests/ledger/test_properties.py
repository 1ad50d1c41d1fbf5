"""Property: any sequence of valid transfers keeps the books balanced and every cached balance exact."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from app.ledger.accounts import campaign_accounts, consumer_accounts, merchant_accounts, platform_account
from app.ledger.checks import cached_balances_match, entries_balance, no_forbidden_negative
from app.ledger.models import AccountKind, LedgerAccount
from app.ledger.service import Overdraft
from tests.factories import make_merchant
from tests.ledger.conftest import move, postings_sum, stored_balance

N_ACCOUNTS = 7  # the funding source, then six accounts of one merchant (see _accounts)

transfers = st.lists(
    st.tuples(
        st.integers(0, N_ACCOUNTS - 1),
        st.integers(0, N_ACCOUNTS - 1),
        st.integers(1, 2_000),
        st.booleans(),  # replay the previous key instead of a new one
    ).filter(lambda t: t[0] != t[1]),
    max_size=25,
)


def _accounts(merchant_id: int) -> list[LedgerAccount]:
    wallet = consumer_accounts(merchant_id, 1)
    campaign = campaign_accounts(merchant_id, 1)
    return [
        platform_account(AccountKind.PLATFORM_FUNDING_SOURCE),
        merchant_accounts(merchant_id).budget,
        campaign.budget,
        campaign.reserved,
        wallet.pending,
        wallet.available,
        wallet.debt,
    ]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=transfers)
def test_random_transfers_keep_the_books(
    db_session: Session, steps: list[tuple[int, int, int, bool]]
) -> None:
    example = db_session.begin_nested()  # each example starts from the same empty ledger
    try:
        merchant_id = make_merchant().id
        accounts = _accounts(merchant_id)
        start = [stored_balance(a.id) for a in accounts]
        expected = list(start)
        last_key: str | None = None
        for i, (source, target, fen, replay) in enumerate(steps):
            key = last_key if replay and last_key else f"prop:{merchant_id}:{i}"
            if key == last_key:
                assert move(accounts[source], accounts[target], fen, merchant_id=merchant_id, key=key) is None
                continue
            if expected[source] < fen and not accounts[source].allow_negative:
                try:
                    move(accounts[source], accounts[target], fen, merchant_id=merchant_id, key=key)
                except Overdraft:
                    continue
                raise AssertionError("an overdraft went through")
            assert move(accounts[source], accounts[target], fen, merchant_id=merchant_id, key=key) is not None
            expected[source] -= fen
            expected[target] += fen
            last_key = key

        actual = [stored_balance(a.id) for a in accounts]
        assert actual == expected
        # Money only enters through the funding source: everything else it gave out is still here.
        assert sum(actual) - sum(start) == 0
        assert [postings_sum(a.id) for a in accounts[1:]] == actual[1:]
        assert all(balance >= 0 for a, balance in zip(accounts, actual, strict=True) if not a.allow_negative)
        assert cached_balances_match() == [] and entries_balance() == [] and no_forbidden_negative() == []
    finally:
        example.rollback()
