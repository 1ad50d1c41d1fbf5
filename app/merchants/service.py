"""Onboarding and lookup of merchants; secrets are sealed on the way in and never come back out."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.audit.service import Actor, record_audit
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.money import Money
from app.extensions import db
from app.merchants.credentials import MerchantSecrets, open_secrets, reseal_secrets, seal_secrets
from app.merchants.models import Merchant, MerchantStatus
from app.merchants.schemas import MerchantConfig, describe_errors

_SECRET_FIELDS = {
    "miniprogram": {"secret": "mp_secret"},
    "official_account": {
        "secret": "oa_secret",
        "token": "oa_token",
        "encoding_aes_key": "oa_encoding_aes_key",
    },
    "pay": {
        "private_key": "pay_private_key_pem",
        "apiv3_key": "apiv3_key",
        "v2_api_key": "v2_api_key",
        "client_cert": "client_cert_pem",
        "client_key": "client_key_pem",
    },
}


def parse_merchant_config(document: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Validate an onboarding document; InvalidInput lists every bad key as ``section.key: message``."""
    from marshmallow import ValidationError

    schema = MerchantConfig(partial=("slug", "name") if partial else ())
    try:
        loaded: dict[str, Any] = schema.load(document)
    except ValidationError as exc:
        lines = describe_errors(exc.messages)
        raise InvalidInput("; ".join(lines), details={"fields": exc.messages}) from None
    return loaded


def _secret_changes(config: dict[str, Any]) -> dict[str, str]:
    changes = {}
    for section, mapping in _SECRET_FIELDS.items():
        for key, secret_name in mapping.items():
            value = (config.get(section) or {}).get(key)
            if value:
                changes[secret_name] = value
    return changes


def _apply_public(merchant: Merchant, config: dict[str, Any]) -> None:
    if "name" in config:
        merchant.name = config["name"]
    if mp := config.get("miniprogram"):
        merchant.mp_appid = mp["appid"]
    if oa := config.get("official_account"):
        merchant.oa_appid = oa["appid"]
    if pay := config.get("pay"):
        merchant.mchid = pay["mchid"]
        merchant.pay_serial_no = pay["serial_no"]
        if pay.get("wechatpay_public_key"):
            merchant.wechatpay_public_key_pem = pay["wechatpay_public_key"]
            merchant.wechatpay_public_key_id = pay.get("wechatpay_public_key_id")
        if pay.get("platform_certificates"):
            merchant.platform_certificates_pem = list(pay["platform_certificates"])
    if payouts := config.get("payouts"):
        merchant.payout_rail = payouts["rail"]
        merchant.withdrawal_fee_bp = payouts["withdrawal_fee_bp"]
        for key in ("withdrawal_min", "withdrawal_daily_limit", "withdrawal_auto_approve_max"):
            value: Money | None = payouts.get(f"{key}_fen")
            if value is not None:
                setattr(merchant, key, value)
    if settlement := config.get("settlement"):
        merchant.after_sales_window_days = settlement["after_sales_window_days"]
    if config.get("h5_origins"):
        merchant.h5_origins = [origin.rstrip("/") for origin in config["h5_origins"]]


def _check_unique(merchant: Merchant) -> None:
    for column in ("slug", "mp_appid", "oa_appid"):
        value = getattr(merchant, column)
        if value is None:
            continue
        clash = db.session.scalar(
            select(Merchant.id).where(getattr(Merchant, column) == value, Merchant.id != (merchant.id or 0))
        )
        if clash is not None:
            raise Conflict(
                f"{column} {value!r} already belongs to another merchant", details={"field": column}
            )


def create_merchant(*, document: dict[str, Any], actor: Actor) -> Merchant:
    """Onboard a merchant from a validated document; its secrets are sealed before they are stored."""
    config = parse_merchant_config(document)
    merchant = Merchant(slug=config["slug"], name=config["name"], sealed_credentials="")
    _apply_public(merchant, config)
    _check_unique(merchant)
    db.session.add(merchant)
    db.session.flush()  # the id binds the sealed credentials to this row
    secrets = MerchantSecrets().merged(_secret_changes(config))
    merchant.sealed_credentials = seal_secrets(merchant.id, secrets)
    record_audit(
        actor=actor,
        action="merchant.create",
        target_type="merchant",
        target_id=merchant.id,
        merchant_id=merchant.id,
        after=merchant_summary(merchant),
    )
    return merchant


def update_merchant(*, merchant: Merchant, document: dict[str, Any], actor: Actor) -> Merchant:
    """Apply the sections present in ``document``; secrets given replace the stored ones."""
    if document.get("slug", merchant.slug) != merchant.slug:
        raise InvalidInput("a merchant's slug cannot change", details={"field": "slug"})
    config = parse_merchant_config(document, partial=True)
    before = merchant_summary(merchant)
    _apply_public(merchant, config)
    _check_unique(merchant)
    changes = _secret_changes(config)
    if changes:
        current = open_secrets(merchant.id, merchant.sealed_credentials)
        merchant.sealed_credentials = seal_secrets(merchant.id, current.merged(changes))
    record_audit(
        actor=actor,
        action="merchant.update",
        target_type="merchant",
        target_id=merchant.id,
        merchant_id=merchant.id,
        before=before,
        after=merchant_summary(merchant) | {"secrets_replaced": sorted(changes)},
    )
    return merchant


def set_merchant_status(*, merchant: Merchant, status: MerchantStatus, reason: str, actor: Actor) -> bool:
    """Suspend or resume ``merchant`` (audited with ``reason``); False if it already had that status.

    A suspended merchant does no new business: its consumers cannot sign in or use their tokens, its shop
    keys are refused and its console can only read and wind down (see ``staff_required``). WeChat's
    callbacks are still verified and applied, and payouts already under way still finish: money in
    motion is never left unrecorded.
    """
    if not reason.strip():
        raise InvalidInput("a reason is required", details={"field": "reason"})
    if merchant.status is status:
        return False
    before = merchant.status
    merchant.status = status
    record_audit(
        actor=actor,
        action="merchant.suspend" if status is MerchantStatus.SUSPENDED else "merchant.resume",
        target_type="merchant",
        target_id=merchant.id,
        merchant_id=merchant.id,
        before={"status": before.value},
        after={"status": status.value, "reason": reason.strip()},
    )
    return True


def merchant_summary(merchant: Merchant) -> dict[str, Any]:
    """Everything about a merchant that may be shown: secrets only as configured/missing."""
    secrets = open_secrets(merchant.id, merchant.sealed_credentials) if merchant.sealed_credentials else None
    return merchant.public_profile() | {
        "pay_serial_no": merchant.pay_serial_no,
        "wechatpay_public_key_id": merchant.wechatpay_public_key_id,
        "platform_certificates": len(merchant.platform_certificates_pem or []),
        "payout_rail": merchant.payout_rail.value,
        # Never "x if x else None": Money(0) is falsy, and 0 fen is a policy (no minimum, review everything).
        "withdrawal_min_fen": merchant.withdrawal_min.fen,
        "withdrawal_fee_bp": merchant.withdrawal_fee_bp,
        "withdrawal_daily_limit_fen": merchant.withdrawal_daily_limit.fen,
        "withdrawal_auto_approve_max_fen": merchant.withdrawal_auto_approve_max.fen,
        "after_sales_window_days": merchant.after_sales_window_days,
        "h5_origins": list(merchant.h5_origins or []),
        "secrets": secrets.configured() if secrets else {},
    }


def get_merchant(slug: str) -> Merchant:
    merchant = db.session.scalar(select(Merchant).where(Merchant.slug == slug))
    if merchant is None:
        raise NotFound(f"no merchant {slug!r}")
    return merchant


def active_merchant_for_appid(appid: str) -> Merchant:
    """The active merchant whose mini-program or official account is ``appid``."""
    merchant = db.session.scalar(
        select(Merchant).where((Merchant.mp_appid == appid) | (Merchant.oa_appid == appid))
    )
    if merchant is None or merchant.status is not MerchantStatus.ACTIVE:
        raise NotFound("unknown appid", details={"field": "appid"})
    return merchant


def merchant_secrets(merchant: Merchant) -> MerchantSecrets:
    return open_secrets(merchant.id, merchant.sealed_credentials)


def reseal_all_credentials() -> int:
    """Re-encrypt every merchant's credentials under the current master key; returns how many changed."""
    from app.merchants.credentials import get_sealer

    sealer = get_sealer()
    count = 0
    # No guard needed: re-sealing the same plaintext twice is harmless; the lock only avoids double work.
    for merchant in db.session.scalars(select(Merchant).order_by(Merchant.id).with_for_update()):
        if merchant.sealed_credentials and not sealer.is_current(merchant.sealed_credentials):
            merchant.sealed_credentials = reseal_secrets(merchant.id, merchant.sealed_credentials)
            count += 1
    return count
