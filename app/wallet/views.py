from __future__ import annotations

from typing import Any

from app.auth.guards import consumer_required, current_consumer
from app.core.api import Blueprint
from app.red_packets.service import packets_of
from app.wallet.schemas import RedPacketSchema, TimelineQuerySchema, TimelineSchema, WalletSchema
from app.wallet.service import Wallet, timeline_page, wallet_of

blp = Blueprint("mp_wallet", __name__, url_prefix="/api/mp/v1", description="Wallet and red packets.")


@blp.route("/wallet")
@consumer_required
@blp.response(200, WalletSchema)
def wallet() -> Wallet:
    """Pending, available, withdrawing and debt, in fen."""
    principal = current_consumer()
    return wallet_of(merchant_id=principal.merchant_id, consumer_id=principal.consumer_id)


@blp.route("/wallet/entries")
@consumer_required
@blp.arguments(TimelineQuerySchema, location="query")
@blp.response(200, TimelineSchema)
def entries(args: dict[str, Any]) -> dict[str, Any]:
    """The wallet's timeline, newest first; each line says why. Page with ``before=next_before``. The first
    page also lists the consumer's personal red packets, sent and received (`personal_packets`)."""
    principal = current_consumer()
    return timeline_page(merchant_id=principal.merchant_id, consumer_id=principal.consumer_id, **args)


@blp.route("/red-packets")
@consumer_required
@blp.response(200, RedPacketSchema(many=True))
def red_packets() -> list[Any]:
    """The signed-in consumer's red packets."""
    principal = current_consumer()
    return packets_of(merchant_id=principal.merchant_id, consumer_id=principal.consumer_id)
