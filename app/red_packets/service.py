"""Red packets: issue (reserving the worst-case cost), apply at payment, redeem, release, expire.

Budget arithmetic lives in the ledger: issuing moves the packet's worst-case cost from the campaign's
budget to its reserve; redemption pays out of the reserve; whatever the reserve no longer needs for a
packet (it expired, or its real cost was lower) goes back to the budget.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, insert, or_, select, update

from app.core.db import utcnow
from app.core.errors import Conflict, DomainError, InvalidInput
from app.core.guards import guarded_update
from app.core.money import Money
from app.extensions import db
from app.ledger.accounts import campaign_accounts, prepaid_account
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


def granted_packet_row(
    grant: IssueRedPacket,
    *,
    merchant_id: int,
    campaign_id: int,
    rule_version_id: int,
    valid_from: datetime,
    source_order_id: int | None = None,
) -> dict[str, Any]:
    """The row of a packet the rule engine decided (for :func:`insert_packet`; the caller reserves its
    worst case in the same transaction, as :func:`issue_red_packet` does)."""
    return {
        "merchant_id": merchant_id,
        "campaign_id": campaign_id,
        "rule_version_id": rule_version_id,
        "rule_id": grant.rule_id,
        "consumer_id": grant.recipient_id,
        "issuer_consumer_id": None,
        "source_order_id": source_order_id,
        "face_value": grant.face_value,
        "min_spend": grant.min_spend,
        "issuer_rate_bp": grant.issuer_rate_bp,
        "buyer_rate_bp": grant.buyer_rate_bp,
        "max_order": grant.max_order_fen,
        "issuer_cap": grant.issuer_cap_fen,
        "buyer_cap": grant.buyer_cap_fen,
        "reserved": grant.worst_case_cost,
        "status": RedPacketStatus.ISSUED,
        "valid_from": valid_from,
        "valid_until": grant.valid_until,
        "created_at": utcnow(),
    }


_INSERT_PACKET = insert(cast(Table, RedPacket.__table__)).returning(cast(Table, RedPacket.__table__).c.id)


def insert_packet(row: dict[str, Any]) -> int:
    """Insert a packet row (:func:`granted_packet_row`) and return its id: one statement, nothing loaded."""
    return int(db.session.execute(_INSERT_PACKET, row).scalar_one())


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
    """Reserve the consumer's packet for ``order`` (payment resolver); raises if it cannot be used.

    The guard is one conditional UPDATE: the packet is the consumer's, valid now, within its minimum
    spend, and either free or already reserved for this very order. Two orders racing for one packet:
    exactly one UPDATE changes the row, the other answers 409 with the packet's state.
    """
    now = utcnow()
    reserved = guarded_update(
        RedPacket,
        red_packet_id,
        RedPacket.merchant_id == order.merchant_id,
        RedPacket.consumer_id == order.consumer_id,
        RedPacket.valid_from <= now,
        RedPacket.valid_until > now,
        RedPacket.min_spend <= order.total,
        or_(
            RedPacket.status == RedPacketStatus.ISSUED,
            and_(RedPacket.status == RedPacketStatus.RESERVED, RedPacket.order_id == order.id),
        ),
        status=RedPacketStatus.RESERVED,
        order_id=order.id,
    )
    packet = db.session.scalar(
        select(RedPacket)
        .where(RedPacket.id == red_packet_id, RedPacket.merchant_id == order.merchant_id)
        .execution_options(populate_existing=True)
    )
    if packet is None or packet.consumer_id != order.consumer_id:
        raise InvalidInput("unknown red packet", details={"fields": {"red_packet_id": ["unknown"]}})
    if not reserved:
        raise _why_not_usable(packet, order, now)
    # At least one fen is always paid through WeChat.
    return Discount(min(packet.face_value, order.total - Money(1)), packet.id)


def _why_not_usable(packet: RedPacket, order: Order, now: datetime) -> DomainError:
    """The reason the reserving UPDATE matched no row, read after it (for the answer only)."""
    if packet.status is RedPacketStatus.RESERVED and packet.order_id != order.id:
        return Conflict("this red packet is being used for another order", details={"status": "reserved"})
    if packet.status not in (RedPacketStatus.ISSUED, RedPacketStatus.RESERVED):
        return Conflict(f"this red packet is {packet.status.value}", details={"status": packet.status.value})
    if not packet.valid_from <= now < packet.valid_until:
        return Conflict(
            "this red packet is not valid now", details={"valid_until": packet.valid_until.isoformat()}
        )
    if order.total < packet.min_spend:
        return InvalidInput(
            f"this red packet needs an order of at least {packet.min_spend.fen} fen",
            details={
                "fields": {"red_packet_id": ["below minimum spend"]},
                "min_spend_fen": packet.min_spend.fen,
            },
        )
    return Conflict("this red packet changed meanwhile; try again", details={"status": packet.status.value})


def release_from_order(order_id: int, red_packet_id: int | None = None) -> int:
    """Give packets reserved for an unpaid order back to their owners (order closed or terms changed).

    One conditional UPDATE (``WHERE order_id = … AND status = 'reserved'``): a packet redeemed or
    re-reserved meanwhile is left alone.
    """
    db.session.flush()
    query = update(RedPacket).where(
        RedPacket.order_id == order_id, RedPacket.status == RedPacketStatus.RESERVED
    )
    if red_packet_id is not None:
        query = query.where(RedPacket.id == red_packet_id)
    result = db.session.execute(
        query.values(status=RedPacketStatus.ISSUED, order_id=None).execution_options(
            synchronize_session="fetch"
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def expire_red_packets(now: datetime | None = None, limit: int = 500) -> int:
    """Expire unused packets past their validity and return their reservation to the campaign budget.

    Each packet is expired by ``UPDATE … WHERE status = 'issued'``: one reserved for an order at the
    same moment keeps its reservation (the order may still be paid); only an expired one is released.
    """
    now = now or utcnow()
    packet_ids = db.session.scalars(
        select(RedPacket.id)
        .where(RedPacket.status == RedPacketStatus.ISSUED, RedPacket.valid_until <= now)
        .order_by(RedPacket.id)
        .limit(limit)
    ).all()
    expired = 0
    for packet_id in packet_ids:
        if not guarded_update(
            RedPacket, packet_id, RedPacket.status == RedPacketStatus.ISSUED, status=RedPacketStatus.EXPIRED
        ):
            continue
        packet = db.session.scalars(
            select(RedPacket).where(RedPacket.id == packet_id).execution_options(populate_existing=True)
        ).one()
        if packet.issuer_consumer_id is not None:
            _return_face_value(packet)
        release_reservation(packet, packet.reserved, reason=EntryReason.RELEASE, key=f"rp-expire:{packet.id}")
        expired += 1
    return expired


def _return_face_value(packet: RedPacket) -> None:
    """A packet a consumer paid for (app.personal) expired unspent: its face value, held in the reserve
    since the claim, goes back to the payer's prepaid balance (to be refunded), not to the campaign."""
    face = min(packet.face_value, packet.reserved)
    if face.fen <= 0:
        return
    assert packet.issuer_consumer_id is not None
    post_entry(
        key=f"rp-expire-face:{packet.id}",
        reason=EntryReason.PERSONAL_FACE,
        cause_type="red_packet",
        cause_id=str(packet.id),
        lines=[
            (campaign_accounts(packet.merchant_id, packet.campaign_id).reserved, -face),
            (prepaid_account(packet.merchant_id, packet.issuer_consumer_id), face),
        ],
        merchant_id=packet.merchant_id,
        rule_version_id=packet.rule_version_id,
        memo=f"red packet {packet.id} expired unspent: its value back to the sender",
    )
    packet.reserved = packet.reserved - face


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
