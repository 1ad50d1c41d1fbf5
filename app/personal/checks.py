"""The personal packets' part of ``ledger check``: each sender's prepaid balance is exactly what their
packets still hold, and a packet is claimed with one red packet or refunded, never both."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import BigInteger, and_, or_, select, type_coerce

from app.extensions import db
from app.ledger.checks import MAX_LISTED, register_check
from app.ledger.models import AccountKind, LedgerAccount
from app.personal.models import PersonalPacket, PersonalPacketStatus
from app.red_packets.models import RedPacket, RedPacketStatus

S = PersonalPacketStatus
# The states in which the sender's money is in their prepaid account (not handed over, not yet refunded).
_HELD = (S.FUNDED, S.AWAITING_SENDER, S.REFUNDING)


def prepaid_matches_packets() -> list[str]:
    """Per (merchant, sender): prepaid balance = the amounts of packets funded, awaiting, refunding, or
    claimed with a red packet that expired unspent (its value returned, the refund not yet asked)."""
    held: dict[tuple[int, int], int] = defaultdict(int)
    for merchant_id, sender_id, fen in db.session.execute(
        select(
            PersonalPacket.merchant_id,
            PersonalPacket.sender_id,
            type_coerce(PersonalPacket.amount, BigInteger),
        )
        .outerjoin(RedPacket, RedPacket.id == PersonalPacket.red_packet_id)
        .where(
            or_(
                PersonalPacket.status.in_(_HELD),
                and_(PersonalPacket.status == S.CLAIMED, RedPacket.status == RedPacketStatus.EXPIRED),
            )
        )
    ).tuples():
        held[(merchant_id, sender_id)] += int(fen)
    balances: dict[tuple[int, int], int] = {
        (int(merchant_id or 0), int(owner_id or 0)): int(fen)
        for merchant_id, owner_id, fen in db.session.execute(
            select(
                LedgerAccount.merchant_id,
                LedgerAccount.owner_id,
                type_coerce(LedgerAccount.balance, BigInteger),
            ).where(LedgerAccount.kind == AccountKind.CONSUMER_PREPAID)
        ).tuples()
    }
    violations = [
        f"consumer {sender} at merchant {merchant}: prepaid {balances.get((merchant, sender), 0)} fen, "
        f"packets hold {held.get((merchant, sender), 0)} fen"
        for merchant, sender in sorted(set(held) | set(balances))
        if balances.get((merchant, sender), 0) != held.get((merchant, sender), 0)
    ]
    has_red = PersonalPacket.red_packet_id.is_not(None)
    refunded = PersonalPacket.status.in_([S.REFUNDING, S.REFUNDED])
    broken = db.session.execute(
        select(PersonalPacket.id, PersonalPacket.status)
        .outerjoin(RedPacket, RedPacket.id == PersonalPacket.red_packet_id)
        .where(
            or_(
                and_(PersonalPacket.status == S.CLAIMED, PersonalPacket.red_packet_id.is_(None)),
                and_(has_red, PersonalPacket.status.not_in([S.CLAIMED, S.REFUNDING, S.REFUNDED])),
                # Money refunded for a packet whose red packet is live or spent: paid out twice.
                and_(has_red, refunded, RedPacket.status != RedPacketStatus.EXPIRED),
            )
        )
        .order_by(PersonalPacket.id)
        .limit(MAX_LISTED)
    ).all()
    violations += [
        f"personal packet {packet_id} is {status.value} with a mismatched red packet"
        for packet_id, status in broken
    ]
    return violations[:MAX_LISTED]


def register() -> None:
    register_check("personal.prepaid_matches_packets", prepaid_matches_packets)
