"""``flask --app wsgi reconcile trades --date D``."""

from __future__ import annotations

import datetime as dt

import click
from flask.cli import AppGroup

from app.extensions import db
from app.payments.reconciliation import reconcile_all
from app.payouts.cli import reconcile_payouts_command

reconcile_cli = AppGroup("reconcile", help="Compare Hongli's records with WeChat's bills.")


@reconcile_cli.command("trades")
@click.option(
    "--date",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    required=True,
    help="The bill day (China date), YYYY-MM-DD.",
)
@click.option("--merchant", "slug", default=None, help="Only this merchant.")
def trades_command(day: dt.datetime, slug: str | None) -> None:
    """Report payments and refunds that differ between WeChat's trade bill and Hongli; exit 1 if any."""
    reports = reconcile_all(day.date(), slug)
    db.session.commit()  # review items for the differences
    total = 0
    for report in reports:
        state = "clean" if report.clean else f"{len(report.differences)} difference(s)"
        click.echo(
            f"{report.merchant} {report.day}: {report.payments_checked} payment(s), "
            f"{report.refunds_checked} refund(s) checked — {state}"
        )
        for d in report.differences:
            click.echo(
                f"  {d.kind:<18} {d.record:<8} {d.key:<24} "
                f"wechat={d.wechat_fen} hongli={d.hongli_fen} {d.detail}"
            )
        total += len(report.differences)
    if total:
        raise SystemExit(1)


reconcile_cli.add_command(reconcile_payouts_command)
