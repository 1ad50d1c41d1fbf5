"""Red packets: issue (reserving the worst-case cost), apply at payment, redeem, release, expire.

Budget arithmetic lives in the ledger: issuing moves the packet's worst-case cost from the campaign's
budget to its reserve; redemption pays out of the reserve; whatever the reserve no longer needs for a
packet (it expired, or its real cost was lower) goes back to the budget.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from app.core.db import utcnow
from app.core.errors import Conflict, InvalidInput
from app.core.money import Money
from app.extensions import db
from app.ledger.accounts import campaign_accounts
from app.ledger.models import EntryReason
from app.ledger.service import post_entry
from app.orders.models import Order
from app.payments.discounts import Discount
from app.rebates.rules import IssueRedPacket
from app.red_packets.models import RedPacket, RedPacketStatus


def issue_red_packet(
    *,
    merchant_id: int,
    campaign_id: int,
    rule_version_id: int,
    rule_id: str,
    consumer_id: int,
    face_value: Money,
    min_spend: Money,
    valid_from: datetime,
    valid_until: datetime,
    issuer_rate_bp: int,
    buyer_rate_bp: int,
    max_order: Money,
    worst_case_cost: Money,
    issuer_cap: Money | None = None,
    buyer_cap: Money | None = None,
    source_order_id: int | None = None,
    idempotency_key: str,
    issuer_consumer_id: int | None = None,
) -> RedPacket | None:
    """Create a packet and reserve its worst-case cost; None if this key issued one already.

    Raises the ledger's ``Overdraft`` when the campaign budget cannot cover the reservation (nothing
    is then created: the campaign never overspends).
    """
    packet = RedPacket(
        merchant_id=merchant_id,
        campaign_id=campaign_id,
        rule_version_id=rule_version_id,
        rule_id=rule_id,
        consumer_id=consumer_id,
        source_order_id=source_order_id,
        face_value=face_value,
        min_spend=min_spend,
        issuer_rate_bp=issuer_rate_bp,
        buyer_rate_bp=buyer_rate_bp,
        max_order=max_order,
        issuer_cap=issuer_cap,
        buyer_cap=buyer_cap,
        reserved=worst_case_cost,
        valid_from=valid_from,
        valid_until=valid_until,
        issuer_consumer_id=issuer_consumer_id,
    )
    try:
        with db.session.begin_nested():
            _reserve(packet, idempotency_key)
    except _AlreadyIssued:
        return None
    return packet


def issue_granted_packet(
    grant: IssueRedPacket,
    *,
    merchant_id: int,
    campaign_id: int,
    rule_version_id: int,
    valid_from: datetime,
    idempotency_key: str,
    source_order_id: int | None = None,
) -> RedPacket | None:
    """:func:`issue_red_packet` with the terms the rule engine decided (frozen rates, caps, worst case)."""
    return issue_red_packet(
        merchant_id=merchant_id,
        campaign_id=campaign_id,
        rule_version_id=rule_version_id,
        rule_id=grant.rule_id,
        consumer_id=grant.recipient_id,
        face_value=grant.face_value,
        min_spend=grant.min_spend,
        valid_from=valid_from,
        valid_until=grant.valid_until,
        issuer_rate_bp=grant.issuer_rate_bp,
        buyer_rate_bp=grant.buyer_rate_bp,
        max_order=grant.max_order_fen,
        worst_case_cost=grant.worst_case_cost,
        issuer_cap=grant.issuer_cap_fen,
        buyer_cap=grant.buyer_cap_fen,
        source_order_id=source_order_id,
        idempotency_key=idempotency_key,
    )


def _reserve(packet: RedPacket, idempotency_key: str) -> None:
    db.session.add(packet)
    db.session.flush()
    entry = post_entry(
        key=idempotency_key,
        reason=EntryReason.RESERVE,
        cause_type="red_packet",
        cause_id=str(packet.id),
        lines=[
            (campaign_accounts(packet.merchant_id, packet.campaign_id).budget, -packet.reserved),
            (campaign_accounts(packet.merchant_id, packet.campaign_id).reserved, packet.reserved),
        ],
        merchant_id=packet.merchant_id,
        rule_version_id=packet.rule_version_id,
        memo=f"reserve worst case of red packet {packet.id}",
    )
    if entry is None:
        raise _AlreadyIssued


class _AlreadyIssued(Exception):
    pass


def apply_to_order(order: Order, red_packet_id: int) -> Discount:
    """Reserve the consumer's packet for ``order`` (payment resolver); raises if it cannot be used."""
    packet = db.session.scalar(
        select(RedPacket)
        .where(RedPacket.id == red_packet_id, RedPacket.merchant_id == order.merchant_id)
        .with_for_update()
    )
    if packet is None or packet.consumer_id != order.consumer_id:
        raise InvalidInput("unknown red packet", details={"fields": {"red_packet_id": ["unknown"]}})
    now = utcnow()
    if not (packet.status is RedPacketStatus.RESERVED and packet.order_id == order.id):
        if packet.status is RedPacketStatus.RESERVED:
            raise Conflict("this red packet is being used for another order", details={"status": "reserved"})
        if packet.status is not RedPacketStatus.ISSUED:
            raise Conflict(
                f"this red packet is {packet.status.value}", details={"status": packet.status.value}
            )
    if not packet.valid_from <= now < packet.valid_until:
        raise Conflict(
            "this red packet is not valid now", details={"valid_until": packet.valid_until.isoformat()}
        )
    if order.total < packet.min_spend:
        raise InvalidInput(
            f"this red packet needs an order of at least {packet.min_spend.fen} fen",
            details={
                "fields": {"red_packet_id": ["below minimum spend"]},
                "min_spend_fen": packet.min_spend.fen,
            },
        )
    packet.status = RedPacketStatus.RESERVED
    packet.order_id = order.id
    # At least one fen is always paid through WeChat.
    return Discount(min(packet.face_value, order.total - Money(1)), packet.id)


def release_from_order(order_id: int, red_packet_id: int | None = None) -> int:
    """Give packets reserved for an unpaid order back to their owners (order closed or terms changed)."""
    query = select(RedPacket).where(
        RedPacket.order_id == order_id, RedPacket.status == RedPacketStatus.RESERVED
    )
    if red_packet_id is not None:
        query = query.where(RedPacket.id == red_packet_id)
    released = 0
    for packet in db.session.scalars(query.with_for_update()):
        packet.status = RedPacketStatus.ISSUED
        packet.order_id = None
        released += 1
    return released


def expire_red_packets(now: datetime | None = None, limit: int = 500) -> int:
    """Expire unused packets past their validity and return their reservation to the campaign budget."""
    now = now or utcnow()
    packets = db.session.scalars(
        select(RedPacket)
        .where(RedPacket.status == RedPacketStatus.ISSUED, RedPacket.valid_until <= now)
        .order_by(RedPacket.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for packet in packets:
        release_reservation(packet, packet.reserved, reason=EntryReason.RELEASE, key=f"rp-expire:{packet.id}")
        packet.status = RedPacketStatus.EXPIRED
    return len(packets)


def release_reservation(packet: RedPacket, amount: Money, *, reason: EntryReason, key: str) -> None:
    """Move ``amount`` of this packet's reservation back to the campaign budget."""
    if amount.fen <= 0:
        return
    post_entry(
        key=key,
        reason=reason,
        cause_type="red_packet",
        cause_id=str(packet.id),
        lines=[
            (campaign_accounts(packet.merchant_id, packet.campaign_id).reserved, -amount),
            (campaign_accounts(packet.merchant_id, packet.campaign_id).budget, amount),
        ],
        merchant_id=packet.merchant_id,
        rule_version_id=packet.rule_version_id,
        memo=f"release reservation of red packet {packet.id}",
    )
    packet.reserved = packet.reserved - amount


def packets_of(*, merchant_id: int, consumer_id: int) -> list[RedPacket]:
    return list(
        db.session.scalars(
            select(RedPacket)
            .where(RedPacket.merchant_id == merchant_id, RedPacket.consumer_id == consumer_id)
            .order_by(RedPacket.id.desc())
        )
    )
