"""``flask --app wsgi dev clock show|advance 8d|reset|sync`` and ``flask --app wsgi dev run-due``.

Every command refuses a production app (``env = "production"``), which has no development clock.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timedelta

import click
from flask import current_app
from flask.cli import AppGroup

from app.core.clock import CACHE_SECONDS, DevClock, dev_clock
from app.core.db import utcnow
from app.devclock.due import DueResult, run_due_jobs
from app.devclock.sandbox import SandboxUnreachable, advance_clock, read_clock, sandbox_bases
from app.settings import Settings

dev_cli = AppGroup("dev", help="Development only: the shared clock of Hongli and the sandbox, due sweeps.")
clock_cli = AppGroup("clock", help="Hongli's business time (and the sandbox's): show, advance, reset, sync.")
dev_cli.add_command(clock_cli)

# Below this, the sandbox and Hongli are "in step" (both run on real time plus their offsets; the
# difference is the time between reading one and the other).
IN_STEP = timedelta(seconds=2)
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+)([dhms])")


class Duration(click.ParamType):
    """``8d``, ``36h``, ``90m``, ``45s``, ``1d12h`` or plain seconds → whole seconds (> 0)."""

    name = "duration"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        text = str(value).strip().lower()
        parts = _DURATION.findall(text) if len(text) <= 32 else []
        if len(text) <= 32 and text.isascii() and text.isdigit():
            seconds = int(text)
        elif text.isascii() and parts and "".join(n + unit for n, unit in parts) == text:
            seconds = sum(int(n) * _UNITS[unit] for n, unit in parts)
        else:
            self.fail(f"{value!r} is not a duration like 8d, 36h, 90m, 45s or 1d12h", param, ctx)
        if not 0 < seconds <= 3650 * 86400:
            self.fail(f"{value!r}: the clock moves forward by 1 second to 10 years at a time", param, ctx)
        return seconds


def _clock() -> DevClock:
    clock = dev_clock()
    if clock is None:
        raise click.ClickException(
            'refused: env = "production" has no development clock (business time there is real time); '
            "`flask dev` commands run only in development and test"
        )
    return clock


def _settings() -> Settings:
    settings: Settings = current_app.extensions["hongli.settings"]
    return settings


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _relation(sandbox_now: datetime, hongli_now: datetime) -> str:
    drift = timedelta(seconds=round((sandbox_now - hongli_now).total_seconds()))
    if abs(drift) < IN_STEP:
        return "in step with hongli"
    if drift > timedelta(0):
        return f"AHEAD of hongli by {drift}: `flask --app wsgi dev clock sync` moves hongli forward to it"
    return f"BEHIND hongli by {-drift}: `flask --app wsgi dev clock sync` advances it"


def _show_hongli(offset: timedelta) -> None:
    click.echo(f"hongli   {_stamp(utcnow())}  real time + {offset}")


@clock_cli.command("show")
def show_command() -> None:
    """Hongli's business time and offset, and each sandbox's time relative to it."""
    clock = _clock()
    _show_hongli(clock.read())
    settings = _settings()
    for base in sandbox_bases(settings):
        try:
            sandbox_now = read_clock(base, timeout=settings.wechat.timeout_seconds)
        except SandboxUnreachable as exc:
            click.echo(f"sandbox  {base}  unreachable ({exc})")
            continue
        click.echo(f"sandbox  {base}  {_stamp(sandbox_now)}  {_relation(sandbox_now, utcnow())}")


@clock_cli.command("advance")
@click.argument("duration", type=Duration())
@click.option(
    "--run-due/--no-run-due",
    default=True,
    show_default=True,
    help="Run the sweeps that became due (settlement, expiries, closing, payouts) right away.",
)
def advance_command(duration: int, run_due: bool) -> None:
    """Move Hongli's business time and the sandbox's forward by DURATION (8d, 36h, 90m, 45s, 1d12h),
    then run the sweeps now due. Exits 1 if a sandbox could not be moved or a sweep failed."""
    clock = _clock()
    settings = _settings()
    offset = clock.advance(duration)
    _show_hongli(offset)
    bases = sandbox_bases(settings)
    if bases:
        # Every other process (web, worker) picks the new offset up within CACHE_SECONDS: wait so that the
        # callbacks the sandbox fires while it advances find them on the new time too.
        time.sleep(CACHE_SECONDS)
    stuck = []
    for base in bases:
        try:
            sandbox_now = advance_clock(base, duration, timeout=settings.wechat.timeout_seconds)
        except SandboxUnreachable as exc:
            stuck.append(base)
            click.echo(f"sandbox  {base}  NOT moved: {exc}", err=True)
            continue
        click.echo(f"sandbox  {base}  {_stamp(sandbox_now)}  {_relation(sandbox_now, utcnow())}")
    failed = _run_due() if run_due else 0
    if stuck:
        raise click.ClickException(
            "hongli moved but the sandbox did not; once it is up: `flask --app wsgi dev clock sync`"
        )
    if failed:
        raise click.ClickException(f"{failed} sweep(s) failed (see above)")


@clock_cli.command("reset")
def reset_command() -> None:
    """Back to real time. The sandbox's clock cannot go back: a sandbox ahead stays ahead until it
    restarts (`flask --app wsgi dev clock show` tells)."""
    clock = _clock()
    clock.reset()
    _show_hongli(timedelta(0))
    settings = _settings()
    for base in sandbox_bases(settings):
        try:
            sandbox_now = read_clock(base, timeout=settings.wechat.timeout_seconds)
        except SandboxUnreachable:
            continue
        if sandbox_now - utcnow() >= IN_STEP:
            click.echo(
                f"sandbox  {base}  stays at {_stamp(sandbox_now)} (its clock only moves forward): "
                "restart it to bring it back to real time",
                err=True,
            )


@clock_cli.command("sync")
def sync_command() -> None:
    """Bring Hongli and the sandbox together again, moving whichever is behind forward (e.g. after the
    sandbox alone was advanced with POST /_sandbox/clock/advance, or restarted)."""
    clock = _clock()
    settings = _settings()
    timeout = settings.wechat.timeout_seconds
    bases = sandbox_bases(settings)
    if not bases:
        raise click.ClickException("no WeChat URL of this configuration points at a local sandbox")
    try:
        ahead = max(read_clock(base, timeout=timeout) - utcnow() for base in bases)
    except SandboxUnreachable as exc:
        raise click.ClickException(f"sandbox unreachable: {exc}") from None
    if ahead >= IN_STEP:
        clock.advance(math.ceil(ahead.total_seconds()))
        time.sleep(CACHE_SECONDS)
    _show_hongli(clock.read())
    for base in bases:
        try:
            behind = utcnow() - read_clock(base, timeout=timeout)
            sandbox_now = (
                advance_clock(base, math.ceil(behind.total_seconds()), timeout=timeout)
                if behind >= IN_STEP
                else read_clock(base, timeout=timeout)
            )
        except SandboxUnreachable as exc:
            raise click.ClickException(f"sandbox unreachable: {exc}") from None
        click.echo(f"sandbox  {base}  {_stamp(sandbox_now)}  {_relation(sandbox_now, utcnow())}")
    click.echo("now run the sweeps that became due: flask --app wsgi dev run-due")


@dev_cli.command("run-due")
def run_due_command() -> None:
    """Run now, in this process, every sweep Hongli runs by time: close unpaid orders, campaign schedules,
    settlement, red-packet expiry, payout passes and queries. Exits 1 if any failed."""
    _clock()
    if _run_due():
        raise click.ClickException("some sweeps failed (see above)")


def _run_due() -> int:
    def report(outcome: DueResult) -> None:
        if outcome.error is None:
            click.echo(f"{outcome.name}: {outcome.result}")
        else:
            click.echo(f"{outcome.name}: FAILED {outcome.error}", err=True)

    return sum(1 for outcome in run_due_jobs(report) if outcome.error is not None)
