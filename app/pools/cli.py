"""``flask --app wsgi pools reconcile``: resolve in-flight grabs and prove Redis and PostgreSQL agree."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.extensions import db
from app.pools.reconcile import GRACE_MS, reconcile_open_pools

pools_cli = AppGroup("pools", help="Red-packet pools.")


@pools_cli.command("reconcile")
@click.option("--grace-ms", default=GRACE_MS, show_default=True, help="Leave younger in-flight grabs alone.")
def reconcile_command(grace_ms: int) -> None:
    """Reconcile every open pool; exit 1 listing each disagreement left."""
    reports = reconcile_open_pools(grace_ms=grace_ms)
    db.session.commit()
    problems = [problem for report in reports for problem in report.problems]
    for report in reports:
        click.echo(
            f"pool {report.pool_id}: {report.finalised} final, {report.given_back} given back"
            + (", rebuilt from PostgreSQL" if report.rebuilt else "")
            + (", skipped: another reconciler is at it" if report.busy else "")
        )
    for problem in problems:
        click.echo(problem)
    if problems:
        raise SystemExit(1)
    click.echo(f"pools agree: {len(reports)} open pool(s)")
