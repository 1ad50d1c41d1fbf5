"""The worker parses the merchants' private keys before forking, so work horses inherit them."""

from __future__ import annotations

from flask import Flask
from sqlalchemy.orm import Session

from app.merchants.service import merchant_secrets
from tests.sandbox import Sandbox
from wechat.crypto import _load_private_key, load_private_key


def test_the_merchants_keys_are_parsed_before_any_work_horse(
    app: Flask, sandbox: Sandbox, db_session: Session
) -> None:
    merchant = sandbox.onboard("acme-tea")
    broken = sandbox.onboard("broken-tea")
    broken.sealed_credentials = "not-a-sealed-box"
    db_session.commit()
    pem = merchant_secrets(merchant).pay_private_key_pem
    _load_private_key.cache_clear()

    from app.queue.worker import warm_caches

    assert warm_caches(app) == 1  # the merchant whose credentials cannot be opened is skipped

    before = _load_private_key.cache_info()
    load_private_key(pem)  # what a work horse's first signed call does
    after = _load_private_key.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)
