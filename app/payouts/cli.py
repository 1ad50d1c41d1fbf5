"""``flask --app wsgi payouts …``: see payouts that have not finished, sweep the outbox, check the query
deadline; and ``flask --app wsgi reconcile payouts --date D``."""

from __future__ import annotations

import datetime as dt

import click
from flask.cli import AppGroup, with_appcontext

from app.core.db import utcnow
from app.extensions import db
from app.payouts import operations, service
from app.payouts.models import OPEN_STATUSES, PayoutStatus
from app.payouts.reconciliation import reconcile_all_payouts

payouts_cli = AppGroup("payouts", help="Payouts to WeChat change (transfer bills, cash red packets).")


@payouts_cli.command("list")
@click.option("--status", "statuses", multiple=True, type=click.Choice([s.value for s in PayoutStatus]))
@click.option("--open", "only_open", is_flag=True, help="Only payouts not finished yet.")
@click.option("--limit", default=100, show_default=True)
def list_command(statuses: tuple[str, ...], only_open: bool, limit: int) -> None:
    """One line per payout: id, bill number, rail, state, WeChat state, calls, next attempt."""
    wanted = [PayoutStatus(s) for s in statuses] or (sorted(OPEN_STATUSES) if only_open else None)
    for p in service.list_payouts(merchant_id=None, statuses=wanted, limit=limit):
        click.echo(
            f"{p.id}\t{p.bill_no}\t{p.rail.value}\t{p.status.value}\t{p.wechat_state or '-'}\t"
            f"submits={p.submit_calls} queries={p.query_calls}\tnext={p.next_attempt_at.isoformat()}"
        )


@payouts_cli.command("sweep")
def sweep_command() -> None:
    """Queue a pass for every due payout (what the periodic sweep does every minute)."""
    count = service.enqueue_due_payouts()
    db.session.commit()
    click.echo(f"queued {count} payout(s)")


@payouts_cli.command("check")
@click.option(
    "--passes",
    default=operations.REPEATED_PASSES,
    show_default=True,
    type=click.IntRange(min=2),
    help="Flag an open payout whose last this many passes failed the same way.",
)
def check_command(passes: int) -> None:
    """Exit 1 if any submitting/unknown payout has gone past ``payouts.unknown_query_deadline_minutes``
    without a query of its bill number on record (the periodic query sweep keeps this from happening), if
    an open payout failed the same way on its last ``--passes`` passes, or if a created payout's passes
    keep ending before they record anything."""
    now = utcnow()
    overdue = operations.overdue_payouts(now=now)
    for p in overdue:
        last = operations.last_query_at(p)
        click.echo(
            f"{p.id}\t{p.bill_no}\t{p.status.value}\tno query for {operations.query_age(p, now)}"
            f"\tlast query: {last.isoformat() if last else 'never'}"
        )
    repeated = operations.repeated_failures(passes=passes, now=now)
    for f in repeated:
        click.echo(
            f"{f.payout.id}\t{f.payout.bill_no}\t{f.payout.status.value}\t"
            f"same failure on {f.passes} passes running: {f.code}"
        )
    never_begun = operations.never_begun(now=now, passes=passes)
    for p in never_begun:
        click.echo(
            f"{p.id}\t{p.bill_no}\t{p.status.value}\tclaimed, lease ran out, no pass on record "
            f"(refused before it could record anything; created {p.created_at.isoformat()})"
        )
    limit = operations.query_deadline()
    if overdue:
        click.echo(f"{len(overdue)} payout(s) past the query deadline ({limit})")
    if repeated:
        click.echo(f"{len(repeated)} payout(s) failing the same way on {passes} or more passes running")
    if never_begun:
        click.echo(f"{len(never_begun)} created payout(s) whose passes end before recording anything")
    if overdue or repeated or never_begun:
        raise SystemExit(1)
    click.echo(
        f"payouts: every submitting/unknown payout queried within {limit}; "
        f"none failing the same way {passes} passes running"
    )


@click.command("payouts")
@click.option(
    "--date",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    required=True,
    help="The China date the payouts finished on, YYYY-MM-DD.",
)
@click.option("--merchant", "slug", default=None, help="Only this merchant.")
@with_appcontext
def reconcile_payouts_command(day: dt.datetime, slug: str | None) -> None:
    """Query WeChat for every payout finished on the date; report differences (exit 1 if any)."""
    reports = reconcile_all_payouts(day.date(), slug)
    db.session.commit()  # review items for the differences
    total = 0
    for report in reports:
        state = "clean" if report.clean else f"{len(report.differences)} difference(s)"
        click.echo(f"{report.merchant} {report.day}: {report.payouts_checked} payout(s) checked — {state}")
        for d in report.differences:
            click.echo(
                f"  {d.kind:<18} {d.record:<8} {d.key:<24} "
                f"wechat={d.wechat_fen} hongli={d.hongli_fen} {d.detail}"
            )
        total += len(report.differences)
    if total:
        raise SystemExit(1)
