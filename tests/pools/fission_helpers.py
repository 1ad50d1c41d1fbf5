"""Set-up for fission-cash pools (shared by tests/pools and tests/races): a merchant that can send v2 red
packets, grabbers with an official-account openid, and what the sandbox says it paid."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.consumers.models import AppKind, WeChatIdentity
from app.core.money import Money
from app.extensions import db
from app.merchants.credentials import seal_secrets
from app.merchants.models import Merchant
from app.merchants.service import merchant_secrets
from app.payouts.models import Payout
from app.pools.models import PoolPayout, SplitKind
from tests.pools.helpers import RULES, grab, open_pool
from tests.races.conftest import Buyer, Race


def can_send_red_packets(race: Race) -> None:
    """The merchant's API client certificate (v2 mutual TLS) in its secrets, money at WeChat, and the
    withdrawal policy the default rail's fallback needs (auto-approved, no fee)."""
    view = race.sandbox.get(f"/merchants/{race.mchid}")
    with race.context():
        merchant = db.session.get(Merchant, race.merchant_id)
        assert merchant is not None
        secrets = merchant_secrets(merchant)
        merchant.sealed_credentials = seal_secrets(
            merchant.id,
            secrets.merged(
                {
                    "client_cert_pem": view["merchant_certificate_pem"],
                    "client_key_pem": secrets.pay_private_key_pem,
                }
            ),
        )
        merchant.withdrawal_min = Money(100)
        merchant.withdrawal_auto_approve_max = Money(1_000_000)
        merchant.withdrawal_fee_bp = 0
        db.session.commit()
    race.sandbox.post(f"/merchants/{race.mchid}/topup", {"amount_fen": 10_000_000})


def follower(race: Race) -> tuple[Buyer, str]:
    """A signed-in grabber who also has the merchant's official-account openid (a red packet pays it)."""
    buyer = race.buyer()
    user = race.sandbox.get(f"/users/{buyer.uid}")
    with race.context():
        merchant = db.session.get(Merchant, race.merchant_id)
        assert merchant is not None and merchant.oa_appid
        openid = user["openids"][merchant.oa_appid]
        db.session.add(
            WeChatIdentity(
                merchant_id=merchant.id,
                consumer_id=buyer.consumer_id,
                app_kind=AppKind.OFFICIAL_ACCOUNT,
                appid=merchant.oa_appid,
                openid=openid,
            )
        )
        db.session.commit()
    return buyer, openid


def fission_pool(race: Race, *, share_fen: int = 3000, count: int = 4, fission_count: int = 3) -> int:
    campaign_id = race.campaign(RULES, budget_fen=share_fen * count * 2)
    return open_pool(
        race,
        campaign_id,
        total_fen=share_fen * count,
        count=count,
        split=SplitKind.FIXED,
        payout=PoolPayout.FISSION_CASH,
        fission_count=fission_count,
    )


def grabbed(race: Race, buyer: Buyer, pool_id: int) -> int:
    won = grab(race, buyer, pool_id)
    assert won.status == 201 and won.body["red_packet_id"] is None, str(won)
    return int(won.body["grant_id"])


def payouts_of(race: Race, consumer_id: int) -> list[Payout]:
    with race.context():
        rows = list(
            db.session.scalars(select(Payout).where(Payout.consumer_id == consumer_id).order_by(Payout.id))
        )
        db.session.expunge_all()
        return rows


def sandbox_packets(race: Race, openid: str) -> list[dict[str, Any]]:
    """Every red packet the sandbox holds for ``openid`` (the seed)."""
    return [p for p in race.sandbox.get("/state/redpacks")["redpacks"] if p["openid"] == openid]


def sandbox_paid(race: Race) -> list[dict[str, Any]]:
    return [p for p in race.sandbox.get(f"/payouts?mchid={race.mchid}")["payouts"] if p["paid"]]
