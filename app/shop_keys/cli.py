"""``flask --app wsgi shop-keys create|list|revoke`` for operators (the console does the same for owners)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.audit.service import CLI
from app.core.errors import DomainError
from app.extensions import db
from app.merchants.service import get_merchant
from app.shop_keys.service import create_shop_key, list_shop_keys, revoke_shop_key

shop_keys_cli = AppGroup("shop-keys", help="API keys of merchants' shop systems.")


@shop_keys_cli.command("create")
@click.option("--merchant", "slug", required=True)
@click.option("--name", required=True)
def create_command(slug: str, name: str) -> None:
    """Create a key; it is printed once (last line) and never again."""
    try:
        issued = create_shop_key(merchant_id=get_merchant(slug).id, name=name, actor=CLI)
        db.session.commit()
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"created shop key {issued.id} for {slug}; store it now, it is not shown again:")
    click.echo(issued.key)


@shop_keys_cli.command("list")
@click.option("--merchant", "slug", required=True)
def list_command(slug: str) -> None:
    for key in list_shop_keys(merchant_id=get_merchant(slug).id):
        state = "revoked" if key.revoked_at else "active"
        click.echo(f"{key.id}\t{key.display_prefix}…\t{state}\t{key.name}")


@shop_keys_cli.command("revoke")
@click.option("--merchant", "slug", required=True)
@click.argument("key_id", type=int)
def revoke_command(slug: str, key_id: int) -> None:
    try:
        revoke_shop_key(merchant_id=get_merchant(slug).id, key_id=key_id, actor=CLI)
        db.session.commit()
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"revoked shop key {key_id}")
