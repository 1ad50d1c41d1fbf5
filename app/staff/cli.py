"""``flask --app wsgi staff create|grant|list|set-password|disable``. Passwords never come from argv."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from app.audit.service import CLI
from app.auth.principals import Role
from app.core.errors import DomainError
from app.core.tx import commit
from app.extensions import db
from app.merchants.service import get_merchant
from app.staff.service import (
    create_staff,
    get_staff_by_email,
    grant_role,
    list_accounts,
    memberships_of,
    set_disabled,
    set_password,
)

staff_cli = AppGroup("staff", help="Console accounts (staff and platform admins) and their roles.")
ROLE_CHOICE = click.Choice([role.value for role in Role])


def _fail(exc: DomainError) -> click.ClickException:
    db.session.rollback()
    return click.ClickException(f"{exc.code}: {exc.message}")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        # One line on stdin (e.g. from a secret manager); the trailing newline is not part of it.
        return sys.stdin.readline().rstrip("\r\n")
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@staff_cli.command("create")
@click.option("--email", required=True)
@click.option("--name", "display_name", required=True, help="Display name")
@click.option("--merchant", "merchant_slug", help="Give a role at this merchant (slug)")
@click.option("--role", type=ROLE_CHOICE, help="The role at --merchant")
@click.option("--platform-admin", is_flag=True, help="Every role at every merchant")
@click.option("--password-stdin", is_flag=True, help="Read the password from one line of stdin")
def create_command(
    email: str,
    display_name: str,
    merchant_slug: str | None,
    role: str | None,
    platform_admin: bool,
    password_stdin: bool,
) -> None:
    """Create a console account (password prompted, or read with --password-stdin)."""
    if (merchant_slug is None) != (role is None):
        raise click.UsageError("--merchant and --role go together")
    password = _read_password(password_stdin)
    try:
        account = create_staff(
            email=email,
            display_name=display_name,
            password=password,
            is_platform_admin=platform_admin,
            actor=CLI,
        )
        if merchant_slug and role:
            grant_role(
                account=account, merchant_id=get_merchant(merchant_slug).id, role=Role(role), actor=CLI
            )
        commit()
    except DomainError as exc:
        raise _fail(exc) from None
    click.echo(f"created staff {account.email} (id {account.id})")


@staff_cli.command("grant")
@click.argument("email")
@click.option("--merchant", "merchant_slug", required=True)
@click.option("--role", type=ROLE_CHOICE, required=True)
def grant_command(email: str, merchant_slug: str, role: str) -> None:
    """Give EMAIL a role at a merchant, or change the role it has there."""
    try:
        account = get_staff_by_email(email)
        grant_role(account=account, merchant_id=get_merchant(merchant_slug).id, role=Role(role), actor=CLI)
        commit()
    except DomainError as exc:
        raise _fail(exc) from None
    click.echo(f"{account.email} is {role} at {merchant_slug}")


@staff_cli.command("list")
def list_command() -> None:
    """One line per account: id, email, flags, roles."""
    for account in list_accounts():
        flags = []
        if account.is_platform_admin:
            flags.append("platform-admin")
        if account.disabled_at is not None:
            flags.append("disabled")
        roles = ",".join(f"{m.merchant}:{m.role.value}" for m in memberships_of(account.id))
        click.echo(f"{account.id}\t{account.email}\t{'|'.join(flags) or '-'}\t{roles or '-'}")


@staff_cli.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from one line of stdin")
def set_password_command(email: str, password_stdin: bool) -> None:
    """Replace EMAIL's password, clear its lockout and end its sessions."""
    password = _read_password(password_stdin)
    try:
        set_password(account=get_staff_by_email(email), password=password, actor=CLI)
        commit()
    except DomainError as exc:
        raise _fail(exc) from None
    click.echo(f"password of {email.strip().lower()} replaced")


@staff_cli.command("disable")
@click.argument("email")
@click.option("--enable", is_flag=True, help="Re-enable instead")
def disable_command(email: str, enable: bool) -> None:
    """Disable EMAIL (its sessions stop working at once), or re-enable it with --enable."""
    try:
        account = set_disabled(account=get_staff_by_email(email), disabled=not enable, actor=CLI)
        commit()
    except DomainError as exc:
        raise _fail(exc) from None
    click.echo(f"{account.email} {'enabled' if enable else 'disabled'}")
