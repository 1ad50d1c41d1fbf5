"""``flask --app wsgi ledger check``: verify every ledger invariant; exit 1 listing each violation."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from app.ledger.checks import ledger_counts, run_checks
from app.metrics.collectors import record_ledger_check

ledger_cli = AppGroup("ledger", help="Inspect and verify the double-entry ledger.")


@ledger_cli.command("check")
def check_command() -> None:
    """Run every ledger check (built-in and registered by other domains); exit 1 if any fails."""
    results = run_checks()
    failed = [result for result in results if result.violations]
    record_ledger_check(current_app, checks=len(results), violations=sum(len(r.violations) for r in failed))
    for result in failed:
        for violation in result.violations:
            click.echo(f"{result.name}: {violation}")
    counts = ledger_counts()
    scope = f"{counts['accounts']} accounts, {counts['entries']} entries, {counts['postings']} postings"
    if failed:
        total = sum(len(result.violations) for result in failed)
        click.echo(
            f"ledger check FAILED: {total} violation(s) in {len(failed)} of {len(results)} checks ({scope})"
        )
        raise SystemExit(1)
    click.echo(f"ledger clean: {len(results)} checks passed ({scope})")
