"""Onboarding from the CLI: documented fields, clear errors, secrets sealed and never shown."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from sqlalchemy.orm import Session

from app.core.sealing import Sealer
from app.merchants.credentials import get_sealer
from app.merchants.models import Merchant, PayoutRail
from app.merchants.service import get_merchant, merchant_secrets

APIV3 = "0123456789abcdefABCDEF0123456789"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "apiclient_key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "merchant.toml"
    path.write_text(text)
    return path


def _document(key_file: Path) -> str:
    return f"""
slug = "lotus-bakery"
name = "Lotus Bakery"
h5_origins = ["https://h5.lotus.example"]

[miniprogram]
appid = "wx1111111111111111"
secret = "mp-secret-0123456789abcdef"

[official_account]
appid = "wx2222222222222222"
secret = "oa-secret-0123456789abcdef"
token = "oatoken123"
encoding_aes_key = "{"a" * 43}"

[pay]
mchid = "1900000109"
serial_no = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
private_key_file = "{key_file}"
apiv3_key = "{APIV3}"

[payouts]
rail = "cash_red_packet"
withdrawal_min_fen = 200
withdrawal_auto_approve_max_fen = 10000

[settlement]
after_sales_window_days = 10
"""


def test_create_show_and_list(app: Flask, db_session: Session, tmp_path: Path, key_file: Path) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["merchants", "create", "--config", str(_toml(tmp_path, _document(key_file)))]
    )
    assert result.exit_code == 0, result.output
    merchant = get_merchant("lotus-bakery")
    assert merchant.payout_rail is PayoutRail.CASH_RED_PACKET
    assert merchant.withdrawal_min.fen == 200
    assert merchant.after_sales_window_days == 10
    secrets = merchant_secrets(merchant)
    assert secrets.apiv3_key == APIV3
    assert secrets.pay_private_key_pem.startswith("-----BEGIN PRIVATE KEY-----")
    # Nothing secret is stored in the clear, nor shown.
    assert APIV3 not in merchant.sealed_credentials
    assert APIV3 not in repr(secrets)
    shown = runner.invoke(args=["merchants", "show", "lotus-bakery"])
    assert shown.exit_code == 0
    data = json.loads(shown.output)
    assert data["secrets"]["apiv3_key"] is True and data["secrets"]["v2_api_key"] is False
    for leaked in (APIV3, "mp-secret-0123456789abcdef", "BEGIN PRIVATE KEY", "oatoken123"):
        assert leaked not in shown.output
    assert "lotus-bakery" in runner.invoke(args=["merchants", "list"]).output


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('apiv3_key = "' + APIV3 + '"', 'apiv3_key = "short"'), "pay.apiv3_key: must be exactly 32"),
        (('appid = "wx1111111111111111"', 'appid = "wechat-app"'), "miniprogram.appid"),
        (('slug = "lotus-bakery"', 'slug = "Lotus Bakery!"'), "slug:"),
        (('rail = "cash_red_packet"', 'rail = "carrier_pigeon"'), "payouts.rail"),
        (("withdrawal_min_fen = 200", "withdrawal_min_fen = 2.5"), "payouts.withdrawal_min_fen"),
        (("[settlement]", 'colour = "red"\n[settlement]'), "payouts.colour"),
    ],
)
def test_bad_documents_name_the_field_and_change_nothing(
    app: Flask, db_session: Session, tmp_path: Path, key_file: Path, change: tuple[str, str], message: str
) -> None:
    document = _document(key_file).replace(*change)
    result = app.test_cli_runner().invoke(
        args=["merchants", "create", "--config", str(_toml(tmp_path, document))]
    )
    assert result.exit_code != 0
    assert message in result.output
    assert db_session.query(Merchant).count() == 0


def test_missing_key_file_is_named(app: Flask, db_session: Session, tmp_path: Path, key_file: Path) -> None:
    document = _document(key_file).replace(str(key_file), str(tmp_path / "nope.pem"))
    result = app.test_cli_runner().invoke(
        args=["merchants", "create", "--config", str(_toml(tmp_path, document))]
    )
    assert result.exit_code != 0
    assert "pay.private_key_file" in result.output


def test_update_replaces_secrets_and_keeps_the_rest(
    app: Flask, db_session: Session, tmp_path: Path, key_file: Path
) -> None:
    runner = app.test_cli_runner()
    runner.invoke(args=["merchants", "create", "--config", str(_toml(tmp_path, _document(key_file)))])
    update = tmp_path / "update.toml"
    update.write_text('[miniprogram]\nappid = "wx1111111111111111"\nsecret = "rotated-secret-0123456789"\n')
    result = runner.invoke(args=["merchants", "update", "lotus-bakery", "--config", str(update)])
    assert result.exit_code == 0, result.output
    secrets = merchant_secrets(get_merchant("lotus-bakery"))
    assert secrets.mp_secret == "rotated-secret-0123456789"
    assert secrets.apiv3_key == APIV3


def test_duplicate_appid_is_a_conflict(
    app: Flask, db_session: Session, tmp_path: Path, key_file: Path
) -> None:
    runner = app.test_cli_runner()
    runner.invoke(args=["merchants", "create", "--config", str(_toml(tmp_path, _document(key_file)))])
    clone = _document(key_file).replace('slug = "lotus-bakery"', 'slug = "lotus-two"')
    result = runner.invoke(args=["merchants", "create", "--config", str(_toml(tmp_path, clone))])
    assert result.exit_code != 0
    assert "conflict" in result.output and "already belongs" in result.output


def test_master_key_rotation_reseals_everything(
    app: Flask, db_session: Session, tmp_path: Path, key_file: Path
) -> None:
    runner = app.test_cli_runner()
    runner.invoke(args=["merchants", "create", "--config", str(_toml(tmp_path, _document(key_file)))])
    old_sealer = get_sealer(app)
    old_key = next(iter(old_sealer._keys.values()))
    new_key = base64.b64decode(base64.b64encode(b"n" * 32))
    rotating = Sealer(new_key, [old_key])
    app.extensions["hongli.sealer"] = rotating
    try:
        result = runner.invoke(args=["merchants", "reseal"])
        assert result.exit_code == 0, result.output
        assert "resealed 1 merchant" in result.output
        merchant = get_merchant("lotus-bakery")
        assert rotating.is_current(merchant.sealed_credentials)
        # The new key alone opens it now; the old key alone no longer does.
        app.extensions["hongli.sealer"] = Sealer(new_key)
        assert merchant_secrets(merchant).apiv3_key == APIV3
        app.extensions["hongli.sealer"] = Sealer(old_key)
        with pytest.raises(Exception, match="unknown master key"):
            merchant_secrets(merchant)
    finally:
        app.extensions["hongli.sealer"] = old_sealer
