"""The onboarding document (`merchants create --config merchant.toml`) and the console views."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_load, validate

from app.core.fields import MoneyField
from app.merchants.models import PayoutRail

SLUG = validate.Regexp(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$", error="lowercase letters, digits and '-'")
APPID = validate.Regexp(r"^wx[0-9a-f]{16}$", error="a WeChat appid looks like wx + 16 hex digits")
MCHID = validate.Regexp(r"^\d{8,12}$", error="a WeChat Pay mchid is 8-12 digits")
KEY32 = validate.Length(equal=32, error="must be exactly 32 characters")
AES_KEY = validate.Regexp(r"^[A-Za-z0-9]{43}$", error="an EncodingAESKey is 43 letters and digits")


class _Strict(Schema):
    class Meta:
        # Unknown keys are refused so a typo never silently drops a credential.
        unknown = "raise"


def _inline_files(data: Any, names: tuple[str, ...]) -> Any:
    """Replace ``<name>_file = "path"`` by ``<name> = <file contents>`` (PEM keys live in files)."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for name in names:
        path = data.pop(f"{name}_file", None)
        if path is None:
            continue
        if name in data:
            raise ValidationError("give either the value or the file, not both", f"{name}_file")
        try:
            data[name] = Path(str(path)).expanduser().read_text()
        except OSError as exc:
            raise ValidationError(f"cannot read {path}: {exc.strerror}", f"{name}_file") from None
    return data


class MiniProgramConfig(_Strict):
    appid = fields.String(required=True, validate=APPID)
    secret = fields.String(required=True, validate=validate.Length(min=16, max=64))


class OfficialAccountConfig(_Strict):
    appid = fields.String(required=True, validate=APPID)
    secret = fields.String(required=True, validate=validate.Length(min=16, max=64))
    token = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9]{3,32}$"))
    encoding_aes_key = fields.String(required=True, validate=AES_KEY)


def _pem(kind: str) -> validate.Validator:
    return validate.Regexp(rf"-----BEGIN [A-Z ]*{kind}-----", error=f"must be a PEM {kind.lower()}")


class PayConfig(_Strict):
    mchid = fields.String(required=True, validate=MCHID)
    serial_no = fields.String(required=True, validate=validate.Regexp(r"^[0-9A-Fa-f]{8,64}$"))
    private_key = fields.String(required=True, validate=_pem("PRIVATE KEY"))
    apiv3_key = fields.String(required=True, validate=KEY32)
    v2_api_key = fields.String(
        load_default="",
        validate=validate.Regexp(r"^(|[A-Za-z0-9]{32})$", error="must be 32 letters and digits"),
    )
    client_cert = fields.String(load_default="")
    client_key = fields.String(load_default="")
    wechatpay_public_key_id = fields.String(load_default=None, validate=validate.Regexp(r"^PUB_KEY_ID_\w+$"))
    wechatpay_public_key = fields.String(load_default=None, validate=_pem("PUBLIC KEY"))
    platform_certificates = fields.List(fields.String(validate=_pem("CERTIFICATE")), load_default=list)

    @pre_load
    def _files(self, data: Any, **_: Any) -> Any:
        data = _inline_files(data, ("private_key", "client_cert", "client_key", "wechatpay_public_key"))
        if isinstance(data, dict) and "platform_certificate_files" in data:
            paths = data.pop("platform_certificate_files")
            if not isinstance(paths, list):
                raise ValidationError("must be a list of paths", "platform_certificate_files")
            certs = _inline_files(
                {f"c{i}_file": p for i, p in enumerate(paths)}, tuple(f"c{i}" for i in range(len(paths)))
            )
            data["platform_certificates"] = [certs[f"c{i}"] for i in range(len(paths))]
        return data


class PayoutConfig(_Strict):
    rail = fields.Enum(PayoutRail, by_value=True, load_default=PayoutRail.TRANSFER_BILL)
    withdrawal_min_fen = MoneyField(load_default=None)
    withdrawal_fee_bp = fields.Integer(strict=True, load_default=0, validate=validate.Range(0, 5000))
    withdrawal_daily_limit_fen = MoneyField(load_default=None)
    withdrawal_auto_approve_max_fen = MoneyField(load_default=None)


class SettlementConfig(_Strict):
    after_sales_window_days = fields.Integer(strict=True, load_default=7, validate=validate.Range(0, 90))


class MerchantConfig(_Strict):
    """The whole onboarding document; on update, every section is optional."""

    slug = fields.String(required=True, validate=SLUG)
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    miniprogram = fields.Nested(MiniProgramConfig)
    official_account = fields.Nested(OfficialAccountConfig)
    pay = fields.Nested(PayConfig)
    payouts = fields.Nested(PayoutConfig)
    settlement = fields.Nested(SettlementConfig)
    h5_origins = fields.List(fields.Url(schemes={"http", "https"}, require_tld=False), load_default=list)


def describe_errors(messages: Any, prefix: str = "") -> list[str]:
    """Flatten marshmallow's nested messages into ``section.key: message`` lines."""
    lines: list[str] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            lines += describe_errors(value, f"{prefix}{key}.")
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        lines.append(f"{prefix.rstrip('.')}: {' '.join(messages)}")
    elif isinstance(messages, list):
        for index, value in enumerate(messages):
            lines += describe_errors(value, f"{prefix}{index}.")
    else:
        lines.append(f"{prefix.rstrip('.')}: {messages}")
    return lines
