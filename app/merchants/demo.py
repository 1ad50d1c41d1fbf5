"""A demo merchant registered in the WeChat sandbox, so `make run` has something to show.

Only for development: it refuses to run unless every WeChat base URL points at the sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from flask import current_app
from sqlalchemy import select

from app.audit.service import Actor
from app.extensions import db
from app.merchants.models import Merchant
from app.merchants.service import create_merchant
from app.settings import Env, Settings

DEMO_SLUG = "demo-tea"
DEMO_NAME = "Demo Tea House (sandbox)"


@dataclass(frozen=True)
class DemoMerchant:
    merchant: Merchant
    created: bool
    mchid: str


def _admin(base: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{base}/_sandbox{path}", json=body, timeout=30)
    if response.status_code >= 300:
        raise RuntimeError(f"sandbox {path}: {response.status_code} {response.text[:300]}")
    data: dict[str, Any] = response.json()
    return data


def seed_demo_merchant(*, slug: str = DEMO_SLUG, name: str = DEMO_NAME, actor: Actor) -> DemoMerchant:
    """Register a merchant, a mini-program and an official account in the sandbox and onboard them."""
    settings: Settings = current_app.extensions["hongli.settings"]
    if settings.env is Env.PRODUCTION or len(settings.wechat.sandbox_urls()) != 3:
        raise RuntimeError("the demo merchant needs every [wechat] base URL pointing at the sandbox")
    existing = db.session.scalar(select(Merchant).where(Merchant.slug == slug))
    if existing is not None:
        return DemoMerchant(existing, False, existing.mchid or "")
    base = settings.wechat.pay_base_url
    notify = f"{settings.web.public_base_url.rstrip('/')}/wechat/{slug}/pay/notify"
    pay = _admin(base, "/merchants", {"notify_url": notify, "balance_fen": 1_000_000_00})
    mini = _admin(base, "/apps", {"kind": "miniprogram", "mchids": [pay["mchid"]]})
    official = _admin(
        base,
        "/apps",
        {
            "kind": "official",
            "mchids": [pay["mchid"]],
            "server_url": f"{settings.web.public_base_url.rstrip('/')}/wechat/{slug}/oa",
        },
    )
    document = {
        "slug": slug,
        "name": name,
        "miniprogram": {"appid": mini["appid"], "secret": mini["secret"]},
        "official_account": {
            "appid": official["appid"],
            "secret": official["secret"],
            "token": official["token"],
            "encoding_aes_key": official["encoding_aes_key"],
        },
        "pay": {
            "mchid": pay["mchid"],
            "serial_no": pay["merchant_serial"],
            "private_key": pay["merchant_private_key_pem"],
            "apiv3_key": pay["apiv3_key"],
            "v2_api_key": pay["v2_key"],
            "wechatpay_public_key_id": pay["public_key_id"],
            "wechatpay_public_key": pay["public_key_pem"],
            "platform_certificates": [pay["platform_certificate_pem"]],
        },
    }
    merchant = create_merchant(document=document, actor=actor)
    return DemoMerchant(merchant, True, pay["mchid"])
