"""``flask --app wsgi budgets deposit|fund-platform``: money entering the marketing budgets."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.audit.service import CLI
from app.campaigns.service import deposit_budget
from app.core.fields import BUDGET_DEPOSIT_MAX_FEN
from app.core.money import Money
from app.extensions import db
from app.merchants.service import get_merchant

budgets_cli = AppGroup("budgets", help="Record money entering marketing budgets (from outside the ledger).")


@budgets_cli.command("deposit")
@click.option("--merchant", "slug", required=True)
@click.option("--amount-fen", type=click.IntRange(min=1, max=BUDGET_DEPOSIT_MAX_FEN), required=True)
@click.option("--key", required=True, help="Idempotency key, e.g. the bank transfer reference.")
def deposit_command(slug: str, amount_fen: int, key: str) -> None:
    """A merchant paid money in for its campaigns: credit its marketing budget (once per key)."""
    done = deposit_budget(key=key, amount=Money(amount_fen), merchant_id=get_merchant(slug).id, actor=CLI)
    db.session.commit()
    click.echo(f"deposited {amount_fen} fen for {slug}" if done else f"deposit {key} was recorded before")


@budgets_cli.command("fund-platform")
@click.option("--amount-fen", type=click.IntRange(min=1, max=BUDGET_DEPOSIT_MAX_FEN), required=True)
@click.option("--key", required=True)
def fund_platform_command(amount_fen: int, key: str) -> None:
    """The platform adds money to its marketing budget (once per key)."""
    done = deposit_budget(key=key, amount=Money(amount_fen), merchant_id=None, actor=CLI)
    db.session.commit()
    click.echo(f"funded the platform budget with {amount_fen} fen" if done else f"{key} was recorded before")
