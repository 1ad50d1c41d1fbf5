"""``flask --app wsgi budgets deposit|fund-platform``: money entering the marketing budgets."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.core.money import Money
from app.extensions import db
from app.ledger.accounts import merchant_accounts, platform_account
from app.ledger.models import AccountKind, EntryReason
from app.ledger.service import post_entry
from app.merchants.service import get_merchant

budgets_cli = AppGroup("budgets", help="Record money entering marketing budgets (from outside the ledger).")


def _fund(key: str, target_kind: str, amount: int, merchant_id: int | None, cause: str) -> bool:
    source = platform_account(AccountKind.PLATFORM_FUNDING_SOURCE)
    target = (
        merchant_accounts(merchant_id).budget
        if merchant_id is not None
        else platform_account(AccountKind.PLATFORM_MARKETING_BUDGET)
    )
    entry = post_entry(
        key=key,
        reason=EntryReason.FUNDING,
        cause_type=cause,
        cause_id=str(merchant_id or 0),
        lines=[(source, -Money(amount)), (target, Money(amount))],
        merchant_id=merchant_id,
        memo=f"{target_kind} funded from outside the ledger",
    )
    db.session.commit()
    return entry is not None


@budgets_cli.command("deposit")
@click.option("--merchant", "slug", required=True)
@click.option("--amount-fen", type=click.IntRange(min=1), required=True)
@click.option("--key", required=True, help="Idempotency key, e.g. the bank transfer reference.")
def deposit_command(slug: str, amount_fen: int, key: str) -> None:
    """A merchant paid money in for its campaigns: credit its marketing budget (once per key)."""
    done = _fund(f"deposit:{key}", "merchant budget", amount_fen, get_merchant(slug).id, "merchant_deposit")
    click.echo(f"deposited {amount_fen} fen for {slug}" if done else f"deposit {key} was recorded before")


@budgets_cli.command("fund-platform")
@click.option("--amount-fen", type=click.IntRange(min=1), required=True)
@click.option("--key", required=True)
def fund_platform_command(amount_fen: int, key: str) -> None:
    """The platform adds money to its marketing budget (once per key)."""
    done = _fund(f"platform-funding:{key}", "platform marketing budget", amount_fen, None, "platform_funding")
    click.echo(f"funded the platform budget with {amount_fen} fen" if done else f"{key} was recorded before")
