"""A merchant's WeChat secrets: one sealed JSON document per merchant, opened only where needed."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from flask import Flask, current_app

from app.core.sealing import Sealer
from app.settings import Settings

_SEALER = "hongli.sealer"


@dataclass(frozen=True)
class MerchantSecrets:
    """Every secret a merchant hands us. ``repr`` never shows a value."""

    mp_secret: str = ""
    oa_secret: str = ""
    oa_token: str = ""
    oa_encoding_aes_key: str = ""
    pay_private_key_pem: str = ""
    apiv3_key: str = ""
    v2_api_key: str = ""
    client_cert_pem: str = ""
    client_key_pem: str = ""

    def __repr__(self) -> str:
        return f"MerchantSecrets(configured={sorted(k for k, v in self.configured().items() if v)})"

    __str__ = __repr__

    def configured(self) -> dict[str, bool]:
        """Which secrets are present (safe to show)."""
        return {f.name: bool(getattr(self, f.name)) for f in fields(self)}

    def merged(self, changes: dict[str, str]) -> MerchantSecrets:
        return MerchantSecrets(**(asdict(self) | changes))


SECRET_NAMES = frozenset(f.name for f in fields(MerchantSecrets))


def init_sealer(app: Flask, settings: Settings) -> None:
    current, previous = settings.security.master_keys()
    app.extensions[_SEALER] = Sealer(current, previous)


def get_sealer(app: Flask | None = None) -> Sealer:
    sealer: Sealer = (app or current_app).extensions[_SEALER]
    return sealer


def _context(merchant_id: int) -> str:
    return f"merchant:{merchant_id}:credentials"


def seal_secrets(merchant_id: int, secrets: MerchantSecrets) -> str:
    return get_sealer().seal_text(json.dumps(asdict(secrets), sort_keys=True), context=_context(merchant_id))


def open_secrets(merchant_id: int, sealed: str) -> MerchantSecrets:
    data = json.loads(get_sealer().open_text(sealed, context=_context(merchant_id)))
    return MerchantSecrets(**{k: v for k, v in data.items() if k in SECRET_NAMES})


def reseal_secrets(merchant_id: int, sealed: str) -> str:
    return get_sealer().reseal(sealed, context=_context(merchant_id))
