"""post_entry: balanced, idempotent, no overdraft, locks in id order; accounts found or created once."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.core.money import Money
from app.ledger.accounts import (
    NEGATIVE_ALLOWED,
    OWNER_OF_KIND,
    account_for,
    campaign_accounts,
    consumer_accounts,
    merchant_accounts,
    platform_account,
)
from app.ledger.models import AccountKind, EntryReason, LedgerAccount, OwnerType
from app.ledger.service import Overdraft, balance, entries_for, find_entry, post_entry, postings_of
from app.merchants.models import Merchant
from tests.factories import make_merchant
from tests.ledger.conftest import (
    entry_count,
    fund,
    move,
    next_key,
    posting_count,
    postings_sum,
    stored_balance,
)


def test_a_balanced_entry_moves_money_and_updates_cached_balances(merchant: Merchant) -> None:
    budget = merchant_accounts(merchant.id).budget
    wallet = consumer_accounts(merchant.id, 41)
    fund(budget, 10_000, merchant_id=merchant.id)

    entry = post_entry(
        key="rebate:order-1:rule-7",
        reason=EntryReason.REBATE_PENDING,
        cause_type="order",
        cause_id="1",
        lines=[(budget, Money(-500)), (wallet.pending, Money(500))],
        merchant_id=merchant.id,
        rule_version_id=7,
        memo="5% of 100.00",
    )

    assert entry is not None
    assert (entry.reason, entry.cause_type, entry.cause_id, entry.rule_version_id, entry.merchant_id) == (
        EntryReason.REBATE_PENDING,
        "order",
        "1",
        7,
        merchant.id,
    )
    assert [(p.account_id, p.amount) for p in postings_of(entry)] == [
        (budget.id, Money(-500)),
        (wallet.pending.id, Money(500)),
    ]
    assert balance(budget) == Money(9_500) and balance(wallet.pending) == Money(500)
    for account in (budget, wallet.pending):
        assert stored_balance(account.id) == postings_sum(account.id)


def test_zero_lines_are_dropped(merchant: Merchant) -> None:
    wallet = consumer_accounts(merchant.id, 42)
    entry = fund(wallet.available, 300, merchant_id=merchant.id)
    replay_free = post_entry(
        key=next_key(),
        reason=EntryReason.SETTLE,
        cause_type="order",
        cause_id="2",
        lines=[(wallet.available, Money(-100)), (wallet.debt, Money(0)), (wallet.pending, Money(100))],
        merchant_id=merchant.id,
    )
    assert replay_free is not None and len(postings_of(replay_free)) == 2
    assert len(postings_of(entry)) == 2


@pytest.mark.parametrize(
    "amounts",
    [[], [0, 0], [100, -99], [100], [-1, 0]],
    ids=["empty", "all-zero", "off-by-one", "one-leg", "one-leg-and-zero"],
)
def test_empty_or_unbalanced_lines_are_refused_and_nothing_is_written(
    merchant: Merchant, amounts: list[int]
) -> None:
    a, b = campaign_accounts(merchant.id, 5)
    before = (entry_count(), posting_count())
    accounts = [a, b]
    with pytest.raises(ValueError):
        post_entry(
            key="bad-entry",
            reason=EntryReason.CORRECTION,
            cause_type="test",
            cause_id="x",
            lines=[(accounts[i % 2], Money(fen)) for i, fen in enumerate(amounts)],
            merchant_id=merchant.id,
        )
    assert (entry_count(), posting_count()) == before


def test_amounts_must_be_money(merchant: Merchant) -> None:
    a, b = campaign_accounts(merchant.id, 6)
    with pytest.raises(TypeError):
        post_entry(
            key=next_key(),
            reason=EntryReason.RESERVE,
            cause_type="test",
            cause_id="x",
            lines=[(a, -100), (b, 100)],  # type: ignore[list-item]
            merchant_id=merchant.id,
        )


def test_same_key_twice_is_one_movement(merchant: Merchant) -> None:
    budget, reserved = campaign_accounts(merchant.id, 9)
    fund(budget, 1_000, merchant_id=merchant.id)

    first = move(budget, reserved, 400, merchant_id=merchant.id, key="reserve:packet-1")
    again = move(budget, reserved, 400, merchant_id=merchant.id, key="reserve:packet-1")

    assert first is not None and again is None
    assert (balance(budget), balance(reserved)) == (Money(600), Money(400))
    assert entry_count("reserve:packet-1") == 1
    assert find_entry("reserve:packet-1") == first


def test_replay_of_an_entry_that_drained_the_account_is_still_a_replay(merchant: Merchant) -> None:
    wallet = consumer_accounts(merchant.id, 43)
    fund(wallet.available, 250, merchant_id=merchant.id)
    assert (
        move(wallet.available, wallet.withdrawing, 250, merchant_id=merchant.id, key="withdraw:1") is not None
    )
    # The account is empty now: a retried job must get "already done", not "insufficient funds".
    assert move(wallet.available, wallet.withdrawing, 250, merchant_id=merchant.id, key="withdraw:1") is None
    assert (balance(wallet.available), balance(wallet.withdrawing)) == (Money(0), Money(250))


def test_overdraft_is_refused_and_nothing_is_written(merchant: Merchant) -> None:
    wallet = consumer_accounts(merchant.id, 44)
    fund(wallet.available, 99, merchant_id=merchant.id)
    before = (entry_count(), posting_count())

    with pytest.raises(Overdraft) as caught:
        move(wallet.available, wallet.withdrawing, 100, merchant_id=merchant.id, key="withdraw:too-much")

    error = caught.value
    assert (error.status, error.code) == (409, "insufficient_funds")
    assert error.details == {
        "account_id": wallet.available.id,
        "kind": "consumer_available",
        "balance_fen": 99,
        "shortfall_fen": 1,
    }
    assert (entry_count(), posting_count()) == before
    assert entry_count("withdraw:too-much") == 0
    assert (stored_balance(wallet.available.id), stored_balance(wallet.withdrawing.id)) == (99, 0)
    # Refused, not consumed: the same key works once the money is there.
    fund(wallet.available, 1, merchant_id=merchant.id)
    assert move(wallet.available, wallet.withdrawing, 100, merchant_id=merchant.id, key="withdraw:too-much")


def _any_account(kind: AccountKind, merchant: Merchant) -> LedgerAccount:
    owner = OWNER_OF_KIND[kind]
    if owner is OwnerType.PLATFORM:
        return platform_account(kind, merchant_id=merchant.id)
    owner_id = merchant.id if owner is OwnerType.MERCHANT else 77
    return account_for(kind=kind, owner_type=owner, owner_id=owner_id, merchant_id=merchant.id)


@pytest.mark.parametrize("kind", list(AccountKind))
def test_only_debt_funding_source_and_clearing_may_go_negative(merchant: Merchant, kind: AccountKind) -> None:
    account = _any_account(kind, merchant)
    sink = platform_account(AccountKind.PAYOUTS_SETTLED, merchant_id=merchant.id)
    if kind is AccountKind.PAYOUTS_SETTLED:
        sink = platform_account(AccountKind.PAYOUTS_IN_FLIGHT, merchant_id=merchant.id)
    allowed = kind in {
        AccountKind.CONSUMER_DEBT,
        AccountKind.PLATFORM_FUNDING_SOURCE,
        AccountKind.WECHAT_CLEARING,
    }

    assert account.allow_negative is allowed and (kind in NEGATIVE_ALLOWED) is allowed
    if allowed:
        assert move(account, sink, 1, merchant_id=merchant.id) is not None
        assert balance(account) == Money(-1)
    else:
        with pytest.raises(Overdraft):
            move(account, sink, 1, merchant_id=merchant.id)
        assert balance(account) == Money(0)


def test_the_database_refuses_a_forbidden_negative_even_around_the_service(
    merchant: Merchant, db_session: Session
) -> None:
    wallet = consumer_accounts(merchant.id, 45)
    with pytest.raises(DBAPIError), db_session.begin_nested():
        db_session.execute(
            text("UPDATE ledger_accounts SET balance = -1 WHERE id = :id"), {"id": wallet.pending.id}
        )


@pytest.mark.parametrize("statement", ["UPDATE postings SET amount = amount * 2", "DELETE FROM postings"])
def test_postings_are_append_only_in_the_database(
    merchant: Merchant, db_session: Session, statement: str
) -> None:
    entry = fund(consumer_accounts(merchant.id, 46).available, 10, merchant_id=merchant.id)
    with pytest.raises(DBAPIError), db_session.begin_nested():
        db_session.execute(text(f"{statement} WHERE entry_id = :id"), {"id": entry.id})
    with pytest.raises(DBAPIError), db_session.begin_nested():
        db_session.execute(
            text("UPDATE journal_entries SET memo = 'edited' WHERE id = :id"), {"id": entry.id}
        )


def test_an_entry_never_moves_money_between_merchants(merchant: Merchant) -> None:
    other = make_merchant()
    mine = consumer_accounts(merchant.id, 47).available
    theirs = consumer_accounts(other.id, 47).available
    fund(mine, 100, merchant_id=merchant.id)
    with pytest.raises(ValueError, match="belongs to merchant"):
        move(mine, theirs, 100, merchant_id=merchant.id)


def test_accounts_are_written_in_ascending_id_order(merchant: Merchant, db_session: Session) -> None:
    wallet = consumer_accounts(merchant.id, 48)
    fund(wallet.available, 100, merchant_id=merchant.id)
    written: list[int] = []

    def record(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        if statement.startswith("UPDATE ledger_accounts"):
            written.append(parameters["account"])

    engine = db_session.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    try:
        # Lines name the higher id first: the write (and so lock) order must not follow the caller's.
        post_entry(
            key=next_key(),
            reason=EntryReason.SETTLE,
            cause_type="test",
            cause_id="lock",
            lines=[(wallet.debt, Money(10)), (wallet.available, Money(-10))],
            merchant_id=merchant.id,
        )
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert written == sorted([wallet.available.id, wallet.debt.id])
    assert (balance(wallet.available), balance(wallet.debt)) == (Money(90), Money(10))


def test_a_refused_entry_leaves_every_balance_as_it_was(merchant: Merchant) -> None:
    wallet = consumer_accounts(merchant.id, 49)
    list(wallet)  # created in declaration order: pending before available
    fund(wallet.available, 100, merchant_id=merchant.id)
    # The pending leg (lower id, written first) succeeds before available refuses: it must be undone.
    lines = [(wallet.pending, Money(150)), (wallet.available, Money(-150))]
    assert wallet.pending.id < wallet.available.id
    with pytest.raises(Overdraft) as refused:
        post_entry(
            key=next_key(),
            reason=EntryReason.SETTLE,
            cause_type="test",
            cause_id="undo",
            lines=lines,
            merchant_id=merchant.id,
        )
    assert refused.value.details["shortfall_fen"] == 50
    assert (balance(wallet.pending), balance(wallet.available)) == (Money(0), Money(100))
    # The session's copies agree with the database (a caller that catches Overdraft reads on).
    assert (wallet.pending.balance, wallet.available.balance) == (Money(0), Money(100))


def test_account_for_finds_or_creates_one_account(merchant: Merchant) -> None:
    first = consumer_accounts(merchant.id, 50)
    again = consumer_accounts(merchant.id, 50)
    assert [a.id for a in first] == [a.id for a in again]
    assert len({a.id for a in first}) == 4
    assert [a.kind for a in first] == [
        AccountKind.CONSUMER_PENDING,
        AccountKind.CONSUMER_AVAILABLE,
        AccountKind.CONSUMER_WITHDRAWING,
        AccountKind.CONSUMER_DEBT,
    ]
    # NULL owner and merchant still identify one platform account.
    source = platform_account(AccountKind.PLATFORM_FUNDING_SOURCE)
    assert platform_account(AccountKind.PLATFORM_FUNDING_SOURCE).id == source.id
    assert (source.owner_id, source.merchant_id, source.natural_key) == (
        None,
        None,
        "platform:-:platform_funding_source:-",
    )
    assert (
        platform_account(AccountKind.WECHAT_CLEARING, merchant_id=merchant.id).id
        != platform_account(AccountKind.WECHAT_CLEARING).id
    )
    assert consumer_accounts(make_merchant().id, 50).pending.id != first.pending.id


@pytest.mark.parametrize(
    "arguments",
    [
        {"kind": AccountKind.CONSUMER_PENDING, "owner_type": OwnerType.MERCHANT, "owner_id": 1},
        {"kind": AccountKind.WECHAT_CLEARING, "owner_type": OwnerType.PLATFORM, "owner_id": 1},
        {"kind": AccountKind.CAMPAIGN_BUDGET, "owner_type": OwnerType.CAMPAIGN, "owner_id": None},
    ],
)
def test_account_for_refuses_an_owner_that_does_not_fit_the_kind(
    merchant: Merchant, arguments: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        account_for(merchant_id=merchant.id, **arguments)


def test_timeline_pages_newest_first(merchant: Merchant) -> None:
    wallet = consumer_accounts(merchant.id, 51)
    budget = merchant_accounts(merchant.id).budget
    fund(budget, 1_000, merchant_id=merchant.id)
    keys = [f"timeline:{i}" for i in range(5)]
    for i, key in enumerate(keys):
        post_entry(
            key=key,
            reason=EntryReason.REBATE_PENDING,
            cause_type="order",
            cause_id=str(i),
            lines=[(budget, Money(-(i + 1))), (wallet.pending, Money(i + 1))],
            merchant_id=merchant.id,
        )
    settle = post_entry(
        key="timeline:settle",
        reason=EntryReason.SETTLE,
        cause_type="order",
        cause_id="0",
        lines=[(wallet.pending, Money(-1)), (wallet.available, Money(1))],
        merchant_id=merchant.id,
    )
    assert settle is not None
    ids = [account.id for account in wallet]

    first = entries_for(ids, limit=2)
    second = entries_for(ids, limit=2, cursor=first.next_cursor)
    third = entries_for(ids, limit=2, cursor=second.next_cursor)

    pages = [first, second, third]
    seen = [item.entry.idempotency_key for page in pages for item in page.items]
    assert seen == ["timeline:settle", "timeline:4", "timeline:3", "timeline:2", "timeline:1", "timeline:0"]
    assert third.next_cursor is None
    # Within the wallet, settling is a move between buckets: its legs net to zero.
    assert first.items[0].net == Money(0) and len(first.items[0].postings) == 2
    assert first.items[1].net == Money(5) and len(first.items[1].postings) == 1
    assert entries_for([], limit=2).items == []
    with pytest.raises(ValueError):
        entries_for(ids, limit=0)
