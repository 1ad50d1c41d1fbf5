"""Ready to distribute by merchant (Citus, docs/scaling.md): every tenant table carries ``merchant_id``,
every row that points at another tenant row points within its own merchant, and every money transaction
(a ledger entry and its postings) of the seed scenario — run for two merchants side by side — touches one
merchant only."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import ForeignKeyConstraint, Table, func, select, update
from sqlalchemy.orm import Session

import app.models  # noqa: F401 - every model registered on the metadata
from app.audit.service import CLI
from app.core.db import Base
from app.ledger.models import JournalEntry, LedgerAccount, Posting
from app.payments.models import Refund
from app.shop_keys.service import create_shop_key
from tests.campaign_setup import start_campaign
from tests.payments.conftest import Shop
from tests.rebates import test_two_way_end_to_end as seed
from tests.sandbox import Sandbox

# Tables without merchant_id, each for a reason. Global: the tenants themselves, and people who may work
# for several merchants (each membership carries merchant_id). Children: reached only through a parent of
# one merchant by a NOT NULL foreign key; before distributing, they get merchant_id too (docs/scaling.md).
GLOBAL = {"merchants", "staff_accounts"}
CHILDREN = {
    "postings": "journal_entries",
    "campaign_rule_versions": "campaigns",
    # A pool's pre-split shares, share links and tier rewards: always read and written with their pool.
    "pool_shares": "pools",
    "pool_share_links": "pools",
    "pool_tier_rewards": "pools",
}


def _tables() -> dict[str, Table]:
    return dict(Base.metadata.tables)


def test_every_tenant_table_carries_merchant_id() -> None:
    tables = _tables()
    without = {name for name, table in tables.items() if "merchant_id" not in table.c}
    assert without == GLOBAL | set(CHILDREN), (
        "a new table without merchant_id: add the column, or say why here"
    )
    for child, parent in CHILDREN.items():
        [fk] = [
            c
            for c in tables[child].constraints
            if isinstance(c, ForeignKeyConstraint) and c.referred_table.name == parent
        ]
        assert all(not column.nullable for column in fk.columns), f"{child} → {parent} must be NOT NULL"


def _cross_merchant_references(session: Session) -> dict[str, int]:
    """For every foreign key between two tables that both carry merchant_id: rows pointing at another
    merchant's row (Citus can only keep such keys, and joins, within one shard group)."""
    found = {}
    for table in _tables().values():
        if "merchant_id" not in table.c:
            continue
        for fk in table.foreign_key_constraints:
            parent = fk.referred_table
            if parent is table or "merchant_id" not in parent.c or len(fk.columns) != 1:
                continue
            [column] = list(fk.columns)
            [element] = fk.elements
            count = session.scalar(
                select(func.count())
                .select_from(table.join(parent, column == element.column))
                .where(table.c.merchant_id.is_distinct_from(parent.c.merchant_id))
            )
            found[f"{table.name}.{column.name} → {parent.name}"] = int(count or 0)
    return found


def _second_shop(shop: Shop, sandbox: Sandbox, client: FlaskClient) -> Shop:
    merchant = sandbox.onboard("bravo-tea")
    key = create_shop_key(merchant_id=merchant.id, name="shop", actor=CLI).key
    user = sandbox.user(id="bruno", nickname="Bruno")
    code = sandbox.login_code("bruno", merchant.mp_appid or "")
    login = client.post("/api/mp/v1/login", json={"appid": merchant.mp_appid, "code": code})
    assert login.status_code == 200, login.json
    token, consumer = login.json["token"], login.json["user"]["id"]
    return Shop(client, sandbox, merchant, key, token, consumer, user["openids"][merchant.mp_appid])


def test_every_money_transaction_of_the_seed_scenario_touches_one_merchant(
    shop: Shop, sandbox: Sandbox, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    other = _second_shop(shop, sandbox, client)
    campaigns = [
        start_campaign(
            s, app, client, seed.TWO_WAY, name="Two-way launch", deposit_key=f"bank-{s.merchant.slug}"
        )
        for s in (shop, other)
    ]
    for each, campaign in zip((shop, other), campaigns, strict=True):
        seed.test_seed_scenario(each, campaign, db_session)
        # The scenario finds its refund by its number alone: the first merchant's gets another.
        db_session.execute(
            update(Refund)
            .where(Refund.merchant_id == each.merchant.id)
            .values(out_refund_no=f"{each.merchant.slug}-R1")
        )

    # Each ledger entry moves money between accounts of its own merchant only (a deposit's counterpart too:
    # the funding source is kept per merchant).
    postings = db_session.execute(
        select(
            JournalEntry.id,
            JournalEntry.merchant_id,
            JournalEntry.reason,
            LedgerAccount.merchant_id,
            LedgerAccount.kind,
        )
        .join(Posting, Posting.entry_id == JournalEntry.id)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
    ).all()
    merchants_of: dict[int, set[int | None]] = {}
    elsewhere = []
    for entry, merchant, reason, account_merchant, kind in postings:
        assert merchant is not None, f"entry {entry} belongs to no merchant"
        merchants_of.setdefault(entry, set()).add(account_merchant)
        if account_merchant != merchant:
            elsewhere.append((reason, account_merchant, kind))
    assert len(merchants_of) > 20 and {m for _, m, *_ in postings} == {shop.merchant.id, other.merchant.id}
    assert elsewhere == []
    # And no row of one merchant points at a row of another.
    crossing = _cross_merchant_references(db_session)
    assert len(crossing) > 20 and {k: v for k, v in crossing.items() if v} == {}


def test_a_deposit_touches_its_merchant_only(shop: Shop, app: Flask, db_session: Session) -> None:
    deposit = app.test_cli_runner().invoke(
        args=[
            "budgets",
            "deposit",
            "--merchant",
            shop.merchant.slug,
            "--amount-fen",
            "10000",
            "--key",
            "dep-1",
        ]
    )
    assert deposit.exit_code == 0, deposit.output
    global_postings = db_session.scalar(
        select(func.count())
        .select_from(Posting)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(LedgerAccount.merchant_id.is_(None))
    )
    assert global_postings == 0
