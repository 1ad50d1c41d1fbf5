"""The red-packet pool pages act as the pools API does: an operator creates a draft (once per form key),
opens it (its whole worst case moved from the campaign budget to its reserve, exactly) and closes it (the
unclaimed shares back, exactly); every role reads the list and a pool's page; a viewer, finance and a
reviewer are refused every change; CSRF; a pool named like a script shows as text; bad input names its
field and changes nothing."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth.principals import Role
from app.core.db import utcnow
from app.extensions import db
from app.ledger.accounts import campaign_accounts
from app.pools.models import Pool, PoolStatus
from app.web.blueprint import BEIJING
from tests.campaign_setup import start_campaign
from tests.console_ui.pages import Browser
from tests.factories import make_staff
from tests.payments.conftest import Shop
from tests.risk.conftest import ledger_clean, shop

__all__ = ["shop"]

NAME = "<script>alert(1)</script>"
RULES = {
    "rules": [
        {
            "id": "fixed",
            "kind": "fixed",
            "priority": 1,
            "stacking": "combinable",
            "amount_fen": 100,
            "min_order_fen": 100_000_000,
        }
    ]
}


def _local(offset: timedelta) -> str:
    return (utcnow() + offset).astimezone(BEIJING).strftime("%Y-%m-%dT%H:%M")


@pytest.fixture
def campaign(shop: Shop, app: Flask, db_session: Session) -> int:
    return start_campaign(shop, app, shop.client, RULES, name="Pools")


def _browser(shop: Shop, role: Role) -> Browser:
    staff = make_staff(merchant=shop.merchant, role=role)
    db.session.commit()
    browser = Browser(shop.client.application.test_client())
    assert browser.login(staff.email).status_code == 303
    return browser


def _form(campaign: int, key: str, **changes: str) -> dict[str, str]:
    return {
        "form_key": key,
        "campaign_id": str(campaign),
        "name": NAME,
        "total": "12.34",
        "count": "5",
        "split": "random",
        "audience": "all",
        "payout": "red_packet",
        "starts_at": _local(-timedelta(minutes=5)),
        "ends_at": _local(timedelta(hours=2)),
        "min_spend": "",
        "valid_days": "7",
        "issuer_rate": "0",
        "buyer_rate": "0",
        "max_order": "",
        "tier_friends_0": "2",
        "tier_reward_0": "1.50",
    } | changes


def _said(browser: Browser, response: object) -> list[str]:
    while getattr(response, "status_code", 200) in (302, 303):
        response = browser.get(response.headers["Location"])  # type: ignore[attr-defined]
    return re.findall(r'data-flash="\w+">([^<]*)<', response.text)  # type: ignore[attr-defined]


def test_an_operator_creates_once_opens_and_closes_a_pool_and_the_ledger_agrees(
    shop: Shop, campaign: int, db_session: Session
) -> None:
    slug = shop.merchant.slug
    operator = _browser(shop, Role.OPERATOR)
    page = operator.get(f"/console/m/{slug}/pools").text
    key = re.search(r'name="form_key" value="([^"]+)"', page)
    assert key and 'data-test="pool-form"' in page

    form = _form(campaign, key.group(1))
    first = operator.post(f"/console/m/{slug}/pools", form)
    assert first.status_code == 303, first.text[:2000]
    again = operator.post(f"/console/m/{slug}/pools", form)  # a double submit: the same pool
    assert again.status_code == 303
    pool = db_session.scalars(select(Pool)).one()
    assert again.headers["Location"] == first.headers["Location"]
    assert first.headers["Location"].endswith(f"/pools/{pool.id}")
    assert (pool.status, pool.total.fen, pool.count, pool.split.value) == (
        PoolStatus.DRAFT,
        1234,
        5,
        "random",
    )
    assert pool.ladder == [{"friends": 2, "reward_fen": 150}]

    listed = operator.get(f"/console/m/{slug}/pools").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listed and NAME not in listed
    assert f'data-pool="{pool.id}"' in listed

    accounts = campaign_accounts(shop.merchant.id, campaign)
    budget_before, reserved_before = accounts.budget.balance.fen, accounts.reserved.balance.fen
    assert operator.post(f"/console/m/{slug}/pools/{pool.id}/open").status_code == 303
    db_session.refresh(pool)
    assert pool.status is PoolStatus.OPEN and pool.reserved.fen == 1234  # no rebate legs: the total
    db_session.refresh(accounts.budget)
    db_session.refresh(accounts.reserved)
    assert accounts.budget.balance.fen == budget_before - 1234
    assert accounts.reserved.balance.fen == reserved_before + 1234
    shown = operator.get(f"/console/m/{slug}/pools/{pool.id}").text
    assert re.search(r'data-figure="reserved_fen" data-fen="1234"', shown)
    assert re.search(r'data-figure="unclaimed_fen" data-fen="1234"', shown)
    assert 'data-test="close-pool"' in shown and 'data-test="open-pool"' not in shown
    ledger_clean()

    # Opening twice is the API's 409, shown on the page it came from; nothing moves.
    twice = operator.post(f"/console/m/{slug}/pools/{pool.id}/open")
    assert twice.status_code == 303 and _said(operator, twice)
    db_session.refresh(accounts.budget)
    assert accounts.budget.balance.fen == budget_before - 1234

    assert operator.post(f"/console/m/{slug}/pools/{pool.id}/close").status_code == 303
    db_session.refresh(pool)
    db_session.refresh(accounts.budget)
    db_session.refresh(accounts.reserved)
    assert pool.status is PoolStatus.CLOSED and pool.released.fen == 1234
    assert (accounts.budget.balance.fen, accounts.reserved.balance.fen) == (budget_before, reserved_before)
    closed = operator.get(f"/console/m/{slug}/pools/{pool.id}").text
    assert 'data-test="close-pool"' not in closed and re.search(
        r'data-figure="released_fen" data-fen="1234"', closed
    )
    ledger_clean()


def test_bad_input_names_its_field_and_creates_nothing(
    shop: Shop, campaign: int, db_session: Session
) -> None:
    slug = shop.merchant.slug
    owner = _browser(shop, Role.OWNER)
    for changes, field in (
        ({"total": "0.03", "count": "5"}, "total_fen"),
        ({"total": "1.234"}, "total"),
        ({"count": "x"}, "count"),
        ({"split": "even"}, "split"),
        ({"ends_at": _local(-timedelta(hours=1))}, "ends_at"),
        ({"tier_friends_0": "0"}, "ladder"),
        ({"issuer_rate": "1.001"}, "issuer_rate"),
        ({"campaign_id": "999999"}, "campaign_id"),
    ):
        answer = owner.post(f"/console/m/{slug}/pools", _form(campaign, "key-" + field, **changes))
        assert answer.status_code == 303, (field, answer.status_code)
        said = _said(owner, answer)
        assert said and field in said[0], (field, said)
    assert db_session.scalar(select(func.count(Pool.id))) == 0
    # A refused form's key may be sent again once corrected.
    fixed = owner.post(f"/console/m/{slug}/pools", _form(campaign, "key-total_fen"))
    assert fixed.status_code == 303 and "/pools/" in fixed.headers["Location"]
    assert db_session.scalar(select(func.count(Pool.id))) == 1


@pytest.mark.parametrize("role", list(Role))
def test_every_role_reads_and_only_an_operator_or_the_owner_acts(
    shop: Shop, campaign: int, role: Role, db_session: Session
) -> None:
    slug = shop.merchant.slug
    owner = _browser(shop, Role.OWNER)
    owner.post(f"/console/m/{slug}/pools", _form(campaign, f"setup-{role.value}"))
    pool = db_session.scalars(select(Pool)).one()
    browser = _browser(shop, role)
    listed = browser.get(f"/console/m/{slug}/pools")
    assert listed.status_code == 200
    assert 'data-nav="red_packet_pools"' in listed.text
    page = browser.get(f"/console/m/{slug}/pools/{pool.id}")
    assert page.status_code == 200
    acts = role in (Role.OWNER, Role.OPERATOR)
    assert ('data-test="pool-form"' in listed.text) is acts
    assert ('data-test="open-pool"' in page.text) is acts
    if acts:
        return
    assert 'data-test="read-only"' in listed.text
    for path in (
        f"/console/m/{slug}/pools",
        f"/console/m/{slug}/pools/{pool.id}/open",
        f"/console/m/{slug}/pools/{pool.id}/close",
    ):
        assert browser.post(path, _form(campaign, f"forged-{role.value}")).status_code == 403, path
    db_session.refresh(pool)
    assert pool.status is PoolStatus.DRAFT
    assert db_session.scalar(select(func.count(Pool.id))) == 1


def test_csrf_and_another_merchant(shop: Shop, campaign: int, db_session: Session) -> None:
    slug = shop.merchant.slug
    owner = _browser(shop, Role.OWNER)
    owner.post(f"/console/m/{slug}/pools", _form(campaign, "csrf-setup"))
    pool = db_session.scalars(select(Pool)).one()
    assert owner.post(f"/console/m/{slug}/pools/{pool.id}/open", csrf=False).status_code == 403
    assert (
        owner.post(f"/console/m/{slug}/pools/{pool.id}/open", {"csrf_token": "nope"}, csrf=False).status_code
        == 403
    )
    assert owner.post(f"/console/m/{slug}/pools", _form(campaign, "csrf-2"), csrf=False).status_code == 403
    db_session.refresh(pool)
    assert pool.status is PoolStatus.DRAFT
    assert db_session.scalar(select(func.count(Pool.id))) == 1
    # Another merchant's owner: the same 403 as for a merchant that does not exist.
    from tests.factories import make_merchant

    stranger = make_staff(merchant=make_merchant("elsewhere-pools"), role=Role.OWNER)
    db.session.commit()
    other = Browser(shop.client.application.test_client())
    assert other.login(stranger.email).status_code == 303
    assert other.get(f"/console/m/{slug}/pools/{pool.id}").status_code == 403
    assert other.get("/console/m/no-such-shop/pools").status_code == 403
    # An unknown pool of one's own merchant is the API's 404.
    assert owner.get(f"/console/m/{slug}/pools/{pool.id + 1000}").status_code == 404


def test_the_pools_list_is_two_round_trips_however_many_pools(
    shop: Shop, campaign: int, db_session: Session
) -> None:
    from app.pools import service
    from app.web.queries import pool_grab_totals
    from tests.console_ui.test_dashboard import statements

    owner = _browser(shop, Role.OWNER)
    for n in range(3):
        owner.post(f"/console/m/{shop.merchant.slug}/pools", _form(campaign, f"many-pools-{n}"))
    merchant_id = shop.merchant.id
    db_session.expire_all()
    with statements() as seen:
        pools = service.list_pools(merchant_id=merchant_id)
        totals = pool_grab_totals(merchant_id=merchant_id)
    assert len(pools) == 3 and totals == {}
    assert len(seen) == 2


def test_a_pools_figures_are_two_round_trips_and_its_funnel_one(
    shop: Shop, campaign: int, db_session: Session
) -> None:
    from app.pools import fission, stats
    from app.pools.models import Pool
    from tests.console_ui.test_dashboard import statements

    owner = _browser(shop, Role.OWNER)
    owner.post(f"/console/m/{shop.merchant.slug}/pools", _form(campaign, "figures-of-one-pool-0001"))
    pool = db_session.scalars(select(Pool)).one()
    merchant_id, pool_id, count = shop.merchant.id, pool.id, pool.count
    db_session.expire_all()
    with statements() as seen:
        figures = stats.pool_stats(merchant_id=merchant_id, pool_id=pool_id)
    assert (figures["grabbed"], figures["unclaimed"], figures["funnel"]) == (0, count, [])
    assert len(seen) == 3  # the pool, every figure, the funnel
    with statements() as seen:
        fission.funnel(pool_id)
    assert len(seen) == 1
