"""``flask --app wsgi merchants create|list|show|update|suspend|resume|reseal``."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import click
from flask.cli import AppGroup
from sqlalchemy import select

from app.audit.service import CLI
from app.core.errors import DomainError
from app.extensions import db
from app.merchants.models import Merchant, MerchantStatus
from app.merchants.service import (
    create_merchant,
    get_merchant,
    merchant_summary,
    reseal_all_credentials,
    set_merchant_status,
    update_merchant,
)

merchants_cli = AppGroup("merchants", help="Onboard and inspect merchants (tenants).")


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise click.ClickException(f"{path}: {exc}") from None


def _fail(exc: DomainError) -> click.ClickException:
    db.session.rollback()
    return click.ClickException(f"{exc.code}: {exc.message}")


@merchants_cli.command("create")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, exists=True),
    required=True,
    help="merchant.toml (see docs/merchants.md)",
)
def create_command(config_path: Path) -> None:
    """Onboard a merchant from a TOML document."""
    try:
        merchant = create_merchant(document=_read(config_path), actor=CLI)
        db.session.commit()
    except DomainError as exc:
        raise _fail(exc) from None
    click.echo(f"created merchant {merchant.slug} (id {merchant.id})")


@merchants_cli.command("update")
@click.argument("slug")
@click.option("--config", "config_path", type=click.Path(path_type=Path, exists=True), required=True)
def update_command(slug: str, config_path: Path) -> None:
    """Apply the sections present in a TOML document to merchant SLUG."""
    try:
        merchant = update_merchant(merchant=get_merchant(slug), document=_read(config_path), actor=CLI)
        db.session.commit()
    except DomainError as exc:
        raise _fail(exc) from None
    click.echo(f"updated merchant {merchant.slug}")


def _set_status(slug: str, status: MerchantStatus, reason: str) -> None:
    if not reason.strip():
        raise click.BadParameter("must say why", param_hint="--reason")
    try:
        changed = set_merchant_status(merchant=get_merchant(slug), status=status, reason=reason, actor=CLI)
        db.session.commit()
    except DomainError as exc:
        raise _fail(exc) from None
    click.echo(f"merchant {slug} is {status.value}" + ("" if changed else " (unchanged)"))


@merchants_cli.command("suspend")
@click.argument("slug")
@click.option("--reason", required=True, help="why (recorded in the audit log)")
def suspend_command(slug: str, reason: str) -> None:
    """Stop merchant SLUG's new business: consumer sign-in and tokens, shop keys, console changes other
    than winding down. WeChat's callbacks and payouts under way continue."""
    _set_status(slug, MerchantStatus.SUSPENDED, reason)


@merchants_cli.command("resume")
@click.argument("slug")
@click.option("--reason", required=True, help="why (recorded in the audit log)")
def resume_command(slug: str, reason: str) -> None:
    """Let suspended merchant SLUG do business again."""
    _set_status(slug, MerchantStatus.ACTIVE, reason)


@merchants_cli.command("list")
def list_command() -> None:
    """One line per merchant."""
    for merchant in db.session.scalars(select(Merchant).order_by(Merchant.id)):
        click.echo(f"{merchant.id}\t{merchant.slug}\t{merchant.status.value}\t{merchant.name}")


@merchants_cli.command("show")
@click.argument("slug")
def show_command(slug: str) -> None:
    """Merchant SLUG as JSON; secrets appear only as configured/missing."""
    try:
        click.echo(json.dumps(merchant_summary(get_merchant(slug)), indent=2, ensure_ascii=False))
    except DomainError as exc:
        raise _fail(exc) from None


@merchants_cli.command("reseal")
def reseal_command() -> None:
    """Re-encrypt every sealed secret (merchant credentials, session keys) under the current master key."""
    from app.consumers.service import reseal_identity_secrets

    merchants = reseal_all_credentials()
    identities = reseal_identity_secrets()
    db.session.commit()
    click.echo(f"resealed {merchants} merchant credential set(s) and {identities} identity secret(s)")


@merchants_cli.command("seed-demo")
def seed_demo_command() -> None:
    """Register a demo merchant in the WeChat sandbox and onboard it (development only; idempotent)."""
    from app.merchants.demo import seed_demo_merchant

    try:
        demo = seed_demo_merchant(actor=CLI)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    merchant = demo.merchant
    state = "created" if demo.created else "already there"
    click.echo(
        f"demo merchant {merchant.slug} {state}: mini-program {merchant.mp_appid}, "
        f"official account {merchant.oa_appid}, mchid {merchant.mchid}"
    )
