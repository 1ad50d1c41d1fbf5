"""``flask --app wsgi payouts …``: see payouts that have not finished, run a pass now, sweep the outbox."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.extensions import db
from app.payouts import service
from app.payouts.models import OPEN_STATUSES, PayoutStatus

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
