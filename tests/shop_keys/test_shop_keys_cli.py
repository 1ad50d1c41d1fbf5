"""Operators create, list and revoke shop keys from the CLI; the key is printed once."""

from __future__ import annotations

from flask import Flask
from sqlalchemy.orm import Session

from app.shop_keys.models import ShopApiKey
from tests.factories import make_merchant


def test_create_list_revoke(app: Flask, db_session: Session) -> None:
    merchant = make_merchant("cli-shop")
    runner = app.test_cli_runner()
    created = runner.invoke(args=["shop-keys", "create", "--merchant", "cli-shop", "--name", "till"])
    assert created.exit_code == 0, created.output
    key = created.output.strip().splitlines()[-1]
    assert key.startswith("hk_")
    record = db_session.query(ShopApiKey).filter_by(merchant_id=merchant.id).one()
    assert key not in record.token_digest
    listed = runner.invoke(args=["shop-keys", "list", "--merchant", "cli-shop"])
    assert "active" in listed.output and key not in listed.output
    assert (
        runner.invoke(args=["shop-keys", "revoke", "--merchant", "cli-shop", str(record.id)]).exit_code == 0
    )
    db_session.refresh(record)
    assert record.revoked_at is not None
