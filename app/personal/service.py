"""Personal two-way red packets (个人间玩法): consumer A pays for a packet for friend B; B claims it (after a
challenge both confirm, if A set one); when B spends it, A earns the campaign's rebate on B's spend.

Money: A's JSAPI payment (a *funding order*, ``out_order_no`` ``personal:<id>``, never a purchase) is booked
as A's prepaid balance. A claim moves the face value from A's prepaid into the campaign's reserve, as the
packet's own reservation, and reserves the worst case of A's rebate from the campaign's budget, as for any
red packet: spending it then pays the merchant the face value out of A's money and A's rebate out of the
campaign's budget (app.rebates, unchanged). Unclaimed after the claim window, lost, or expired unspent:
the funding payment is refunded through WeChat and A's prepaid balance goes back out with it.

Every state change is a conditional UPDATE on the packet's status (see ``PERSONAL_TRANSITIONS``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select

from app.audit.service import Actor, record_audit
from app.campaigns.models import Campaign, CampaignStatus
from app.consumers.models import Consumer, ConsumerStatus
from app.core.db import utcnow
from app.core.errors import ConcurrentChange, Conflict, DomainError, Forbidden, InvalidInput, NotFound
from app.core.guards import guarded_update
from app.core.money import Money
from app.events.bus import Event
from app.extensions import db
from app.ledger.accounts import campaign_accounts, platform_account, prepaid_account
from app.ledger.models import AccountKind, EntryReason
from app.ledger.service import Overdraft, post_entry
from app.merchants.models import Merchant
from app.orders.models import Order
from app.payments.models import Refund, RefundStatus
from app.payments.refunds import refund_funding_payment
from app.payments.service import PaymentRequest, prepare_payment
from app.personal.models import (
    FUNDING_ORDER_PREFIX,
    RULE_ID,
    ChallengeKind,
    Outcome,
    PersonalPacket,
    PersonalPacketStatus,
    PersonalTerms,
)
from app.rebates.rules import worst_case_cost
from app.red_packets.models import RedPacket, RedPacketStatus
from app.red_packets.service import issue_red_packet
from app.reviews.service import flag_for_review

logger = logging.getLogger("hongli.personal")
S = PersonalPacketStatus
CLAIMABLE = (S.FUNDED,)
REFUNDABLE_UNCLAIMED = (S.FUNDED, S.AWAITING_SENDER)


class PacketNotClaimable(Conflict):
    code = "packet_not_claimable"


class ClaimWindowClosed(Conflict):
    code = "claim_window_closed"


class AlreadyClaimed(Conflict):
    code = "already_claimed"


class OwnPacket(Forbidden):
    code = "own_packet"


class NotYourPacket(Forbidden):
    code = "not_your_packet"


class NotAParty(Forbidden):
    code = "not_a_party"


class AccountBanned(Forbidden):
    code = "account_banned"


class NoChallenge(Conflict):
    code = "no_challenge"


class AlreadyConfirmed(Conflict):
    code = "already_confirmed"


class PersonalPacketsOff(Conflict):
    code = "personal_packets_not_offered"


class CampaignBudgetExhausted(Conflict):
    code = "campaign_budget_exhausted"


# ---------------------------------------------------------------- terms (console)


def set_terms(*, merchant_id: int, campaign_id: int, document: dict[str, Any], actor: Actor) -> PersonalTerms:
    """Create or replace a campaign's personal-packet terms (packets already created keep theirs)."""
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or campaign.merchant_id != merchant_id:
        raise NotFound("no such campaign")
    if document["min_amount"] > document["max_amount"]:
        raise InvalidInput(
            "min_amount_fen exceeds max_amount_fen", details={"fields": {"min_amount_fen": ["> max"]}}
        )
    if document["max_order"] < document["min_spend"]:
        raise InvalidInput(
            "max_order_fen is below min_spend_fen", details={"fields": {"max_order_fen": ["< min"]}}
        )
    if _leg_worst_case(document["max_order"], document["sender_rate_bp"], document.get("sender_cap")).fen < 1:
        raise InvalidInput(
            "the sender's rebate at max_order_fen rounds to 0 fen",
            details={"fields": {"sender_rate_bp": ["rounds to 0 at max_order_fen"]}},
        )
    terms = db.session.scalar(select(PersonalTerms).where(PersonalTerms.campaign_id == campaign_id))
    if terms is None:
        terms = PersonalTerms(merchant_id=merchant_id, campaign_id=campaign_id, **document)
        db.session.add(terms)
    else:
        for name, value in document.items():
            setattr(terms, name, value)
    db.session.flush()
    record_audit(
        actor=actor,
        action="personal_terms.set",
        target_type="campaign",
        target_id=campaign_id,
        merchant_id=merchant_id,
        after={name: value.fen if isinstance(value, Money) else value for name, value in document.items()},
    )
    return terms


def get_terms(*, merchant_id: int, campaign_id: int) -> PersonalTerms:
    terms = db.session.scalar(
        select(PersonalTerms).where(
            PersonalTerms.campaign_id == campaign_id, PersonalTerms.merchant_id == merchant_id
        )
    )
    if terms is None:
        raise NotFound("this campaign has no personal-packet terms")
    return terms


def _leg_worst_case(max_order: Money, rate_bp: int, cap: Money | None) -> Money:
    return worst_case_cost(Money(0), max_order, rate_bp, 0, cap, None)


# ---------------------------------------------------------------- create and fund (sender)


@dataclass(frozen=True)
class Created:
    packet: PersonalPacket
    payment: PaymentRequest


def create_packet(
    *,
    merchant: Merchant,
    sender_id: int,
    appid: str,
    campaign_id: int,
    amount: Money,
    message: str = "",
    friend_id: int | None = None,
    challenge: ChallengeKind = ChallengeKind.NONE,
    challenge_target: int | None = None,
    challenge_deadline: datetime | None = None,
) -> Created:
    """A packet awaiting the sender's payment, its funding order, and the ``wx.requestPayment`` parameters.

    Commits (the payment's ``out_trade_no`` must be durable before WeChat sees it, as for any order).
    """
    terms = db.session.scalar(
        select(PersonalTerms)
        .join(Campaign, Campaign.id == PersonalTerms.campaign_id)
        .where(
            PersonalTerms.campaign_id == campaign_id,
            PersonalTerms.merchant_id == merchant.id,
            PersonalTerms.enabled.is_(True),
            Campaign.status == CampaignStatus.ACTIVE,
        )
    )
    if terms is None:
        raise PersonalPacketsOff(
            "this campaign does not offer personal red packets now", details={"campaign_id": campaign_id}
        )
    if not terms.min_amount <= amount <= terms.max_amount:
        raise InvalidInput(
            f"amount_fen must be {terms.min_amount.fen} to {terms.max_amount.fen}",
            details={"fields": {"amount_fen": ["out of range"]}},
        )
    if friend_id is not None:
        if friend_id == sender_id:
            raise InvalidInput(
                "a packet is for a friend, not yourself", details={"fields": {"friend_id": ["self"]}}
            )
        friend = db.session.get(Consumer, friend_id)
        if friend is None or friend.merchant_id != merchant.id:
            raise InvalidInput("unknown friend", details={"fields": {"friend_id": ["unknown"]}})
    now = utcnow()
    if challenge is ChallengeKind.NONE:
        if challenge_target is not None or challenge_deadline is not None:
            raise InvalidInput(
                "a target or deadline needs a challenge", details={"fields": {"challenge": ["missing"]}}
            )
    else:
        if challenge_deadline is None or challenge_deadline <= now:
            raise InvalidInput(
                "a challenge needs a deadline in the future",
                details={"fields": {"challenge_deadline": ["required, in the future"]}},
            )
        if challenge is ChallengeKind.STEPS and not challenge_target:
            raise InvalidInput(
                "a steps challenge needs a target", details={"fields": {"challenge_target": ["required"]}}
            )
    packet = PersonalPacket(
        merchant_id=merchant.id,
        campaign_id=campaign_id,
        sender_id=sender_id,
        friend_id=friend_id,
        share_code=secrets.token_urlsafe(16)[:22],
        amount=amount,
        message=message,
        challenge=challenge,
        challenge_target=challenge_target,
        challenge_deadline=challenge_deadline,
        sender_rate_bp=terms.sender_rate_bp,
        sender_cap=terms.sender_cap,
        # The friend pays at least 1 fen through WeChat, so the whole face value is always spent.
        min_spend=max(terms.min_spend, amount + Money(1)),
        max_order=max(terms.max_order, amount + Money(1)),
        valid_days=terms.valid_days,
        claim_hours=terms.claim_hours,
        created_at=now,
    )
    db.session.add(packet)
    db.session.flush()
    out_order_no = f"{FUNDING_ORDER_PREFIX}{packet.id}"
    order = Order(
        merchant_id=merchant.id,
        consumer_id=sender_id,
        out_order_no=out_order_no,
        request_digest=hashlib.sha256(out_order_no.encode()).hexdigest(),
        total=amount,
        items=[
            {
                "sku": "PERSONAL-PACKET",
                "name": "个人红包",
                "category": "personal_packet",
                "quantity": 1,
                "unit_price_fen": amount.fen,
            }
        ],
        description="个人红包 personal red packet",
        open_after_sale_ids=[],
        created_at=now,
    )
    db.session.add(order)
    db.session.flush()
    packet.funding_order_id = order.id
    payment = prepare_payment(
        merchant=merchant, consumer_id=sender_id, order_id=order.id, appid=appid, red_packet_id=None
    )
    return Created(packet, payment)


def pay_again(*, merchant: Merchant, sender_id: int, packet_id: int, appid: str) -> Created:
    """The payment parameters of a packet still awaiting payment (same prepay while valid)."""
    packet = _packet(merchant.id, packet_id)
    if packet.sender_id != sender_id:
        raise NotFound("no such personal red packet")
    if packet.status is not S.PENDING_PAYMENT or packet.funding_order_id is None:
        raise Conflict(f"this packet is {packet.status.value}", details={"status": packet.status.value})
    payment = prepare_payment(
        merchant=merchant,
        consumer_id=sender_id,
        order_id=packet.funding_order_id,
        appid=appid,
        red_packet_id=None,
    )
    return Created(packet, payment)


def _funding_packet(order_id: int) -> PersonalPacket | None:
    return db.session.scalar(
        select(PersonalPacket)
        .where(PersonalPacket.funding_order_id == order_id)
        .execution_options(populate_existing=True)
    )


def on_order_paid(event: Event) -> None:
    """``order.paid`` of a funding order: the packet is funded, the money is the sender's prepaid balance."""
    packet = _funding_packet(event.subject_id)
    if packet is None:
        return
    now = utcnow()
    # A challenge is claimed once it is decided: the window runs from the later of now and its deadline.
    opens = max(now, packet.challenge_deadline) if packet.challenge_deadline is not None else now
    if not guarded_update(
        PersonalPacket,
        packet.id,
        PersonalPacket.status.in_([S.PENDING_PAYMENT, S.CLOSED]),
        status=S.FUNDED,
        funded_at=now,
        claim_deadline=opens + timedelta(hours=packet.claim_hours),
    ):
        return
    amount = Money(int(event.payload["paid_fen"]))
    post_entry(
        key=f"personal:{packet.id}:funding",
        reason=EntryReason.PERSONAL_FUNDING,
        cause_type="personal_packet",
        cause_id=str(packet.id),
        lines=[
            (platform_account(AccountKind.WECHAT_CLEARING, packet.merchant_id), -amount),
            (prepaid_account(packet.merchant_id, packet.sender_id), amount),
        ],
        merchant_id=packet.merchant_id,
        memo=f"paid for personal red packet {packet.id}",
    )


def on_order_closed(event: Event) -> None:
    """``order.closed`` of a funding order: never paid, the packet is closed."""
    packet = _funding_packet(event.subject_id)
    if packet is not None:
        guarded_update(PersonalPacket, packet.id, PersonalPacket.status == S.PENDING_PAYMENT, status=S.CLOSED)


# ---------------------------------------------------------------- claim and confirm (friend, sender)


def _packet(merchant_id: int, packet_id: int) -> PersonalPacket:
    packet = db.session.scalar(
        select(PersonalPacket)
        .where(PersonalPacket.id == packet_id, PersonalPacket.merchant_id == merchant_id)
        .execution_options(populate_existing=True)
    )
    if packet is None:
        raise NotFound("no such personal red packet")
    return packet


def _risk_check(*, merchant_id: int, consumer_id: int, packet_id: int) -> None:
    """The risk engine's say on a claim (per IP, device, account and linked group; docs/risk.md): a refusal
    raises its 429 ``risk_limited`` / 403 ``risk_blocked`` with nothing claimed, the decision recorded."""
    from app.risk import check_claim

    check_claim(
        merchant_id=merchant_id,
        consumer_id=consumer_id,
        kind="personal_packet",
        reference=f"personal:{packet_id}",
    )


def _active_consumer(consumer_id: int) -> None:
    consumer = db.session.get(Consumer, consumer_id)
    if consumer is None or consumer.status is ConsumerStatus.BANNED:
        raise AccountBanned("this account may not claim red packets")


def claim_packet(
    *, merchant_id: int, consumer_id: int, packet_id: int, share_code: str | None
) -> PersonalPacket:
    """The friend claims the packet: it becomes their in-app red packet (or, on a challenge the sender has
    not yet confirmed, it waits for the sender's confirmation of the win).

    A packet naming a friend is that friend's only; one naming nobody is the first claimer's with the
    share code. The guard is one conditional UPDATE on the packet's status and window.
    """
    packet = _packet(merchant_id, packet_id)
    _active_consumer(consumer_id)
    if packet.sender_id == consumer_id:
        raise OwnPacket("you cannot claim the red packet you sent")
    if packet.friend_id is not None and packet.friend_id != consumer_id:
        raise NotYourPacket("this red packet is for someone else")
    if packet.friend_id is None and not (
        share_code and hmac.compare_digest(share_code.encode(), packet.share_code.encode())
    ):
        raise NotYourPacket("claim it through the link its sender shared", details={"reason": "share_code"})
    _risk_check(merchant_id=merchant_id, consumer_id=consumer_id, packet_id=packet.id)
    now = utcnow()
    mine = or_(PersonalPacket.friend_id.is_(None), PersonalPacket.friend_id == consumer_id)
    window = PersonalPacket.claim_deadline > now
    challenge = packet.challenge is not ChallengeKind.NONE
    if challenge and packet.sender_outcome is not Outcome.WON:
        # The claim is the friend's word that they won; the sender's is still missing.
        if guarded_update(
            PersonalPacket,
            packet.id,
            PersonalPacket.status == S.FUNDED,
            PersonalPacket.sender_outcome.is_(None),
            window,
            mine,
            status=S.AWAITING_SENDER,
            friend_id=consumer_id,
            friend_outcome=Outcome.WON,
        ):
            return _packet(merchant_id, packet.id)
    elif _to_claimed(packet.id, now, PersonalPacket.status == S.FUNDED, window, mine, friend_id=consumer_id):
        if challenge:
            guarded_update(PersonalPacket, packet.id, friend_outcome=Outcome.WON)
        return _packet(merchant_id, packet.id)
    raise _why_not_claimable(_packet(merchant_id, packet.id), consumer_id, now)


def _to_claimed(packet_id: int, now: datetime, *conditions: ColumnElement[bool], **values: Any) -> bool:
    """The claiming UPDATE, then the red packet issued to the friend; False if the UPDATE matched nothing.

    One savepoint: a packet the campaign cannot fund now stays as it was (claimable again later)."""
    with db.session.begin_nested():
        if not guarded_update(
            PersonalPacket, packet_id, *conditions, status=S.CLAIMED, claimed_at=now, **values
        ):
            return False
        packet = db.session.scalars(
            select(PersonalPacket)
            .where(PersonalPacket.id == packet_id)
            .execution_options(populate_existing=True)
        ).one()
        _issue(packet, now)
    return True


def _issue(packet: PersonalPacket, now: datetime) -> None:
    """The friend's red packet: the sender's rebate reserved worst-case from the campaign's budget, the face
    value moved from the sender's prepaid balance into the campaign's reserve (the packet's own money)."""
    assert packet.friend_id is not None
    campaign = db.session.get(Campaign, packet.campaign_id)
    assert campaign is not None and campaign.current_version_id is not None
    legs = _leg_worst_case(packet.max_order, packet.sender_rate_bp, packet.sender_cap)
    try:
        with db.session.begin_nested():
            red_packet = issue_red_packet(
                merchant_id=packet.merchant_id,
                campaign_id=packet.campaign_id,
                rule_version_id=campaign.current_version_id,
                rule_id=RULE_ID,
                consumer_id=packet.friend_id,
                issuer_consumer_id=packet.sender_id,
                face_value=packet.amount,
                min_spend=packet.min_spend,
                valid_from=now,
                valid_until=now + timedelta(days=packet.valid_days),
                issuer_rate_bp=packet.sender_rate_bp,
                buyer_rate_bp=0,
                max_order=packet.max_order,
                worst_case_cost=legs,
                issuer_cap=packet.sender_cap,
                idempotency_key=f"personal:{packet.id}:issue",
            )
    except Overdraft:
        raise CampaignBudgetExhausted(
            "the campaign cannot fund the sender's rebate now; try again later",
            details={"campaign_id": packet.campaign_id},
        ) from None
    assert red_packet is not None, "a packet is claimed once (its status guard), so issued once"
    post_entry(
        key=f"personal:{packet.id}:face",
        reason=EntryReason.PERSONAL_FACE,
        cause_type="red_packet",
        cause_id=str(red_packet.id),
        lines=[
            (prepaid_account(packet.merchant_id, packet.sender_id), -packet.amount),
            (campaign_accounts(packet.merchant_id, packet.campaign_id).reserved, packet.amount),
        ],
        merchant_id=packet.merchant_id,
        rule_version_id=red_packet.rule_version_id,
        memo=f"personal red packet {packet.id} claimed: its value held for red packet {red_packet.id}",
    )
    red_packet.reserved = red_packet.reserved + packet.amount
    guarded_update(PersonalPacket, packet.id, red_packet_id=red_packet.id)


def _why_not_claimable(packet: PersonalPacket, consumer_id: int, now: datetime) -> DomainError:
    details = {"status": packet.status.value}
    if packet.status in (S.CLAIMED, S.AWAITING_SENDER) and packet.friend_id == consumer_id:
        return AlreadyClaimed("you already claimed this red packet", details=details)
    if packet.status in (S.CLAIMED, S.AWAITING_SENDER):
        return NotYourPacket("someone else claimed this red packet", details=details)
    if packet.status is S.FUNDED and packet.claim_deadline is not None and packet.claim_deadline <= now:
        return ClaimWindowClosed("the time to claim this red packet has run out", details=details)
    return PacketNotClaimable(f"this red packet is {packet.status.value}", details=details)


def confirm_outcome(
    *, merchant_id: int, consumer_id: int, packet_id: int, outcome: Outcome
) -> PersonalPacket:
    """The challenge's outcome, as the sender or the friend sees it. The packet is claimed when both say the
    friend won; either saying they lost returns the money to the sender. Anyone else is refused."""
    packet = _packet(merchant_id, packet_id)
    is_sender = packet.sender_id == consumer_id
    if not is_sender and (packet.friend_id is None or packet.friend_id != consumer_id):
        raise NotAParty("only the sender and the friend confirm a challenge")
    if packet.challenge is ChallengeKind.NONE:
        raise NoChallenge("this red packet has no challenge to confirm")
    now = utcnow()
    mine = PersonalPacket.sender_outcome if is_sender else PersonalPacket.friend_outcome
    if outcome is Outcome.LOST:
        if guarded_update(
            PersonalPacket,
            packet.id,
            PersonalPacket.status.in_(REFUNDABLE_UNCLAIMED),
            mine.is_(None) if is_sender else or_(mine.is_(None), mine != Outcome.LOST),
            status=S.REFUNDING,
            **({"sender_outcome": outcome} if is_sender else {"friend_outcome": outcome}),
        ):
            _refund(_packet(merchant_id, packet.id), reason="personal red packet: challenge lost")
            return _packet(merchant_id, packet.id)
    elif not is_sender:
        return claim_packet(
            merchant_id=merchant_id, consumer_id=consumer_id, packet_id=packet.id, share_code=None
        )
    elif _to_claimed(
        packet.id,
        now,
        PersonalPacket.status == S.AWAITING_SENDER,
        PersonalPacket.sender_outcome.is_(None),
        sender_outcome=Outcome.WON,
    ) or guarded_update(
        PersonalPacket,
        packet.id,
        PersonalPacket.status == S.FUNDED,
        PersonalPacket.sender_outcome.is_(None),
        sender_outcome=Outcome.WON,
    ):
        return _packet(merchant_id, packet.id)
    packet = _packet(merchant_id, packet.id)
    details = {"status": packet.status.value}
    if (packet.sender_outcome if is_sender else packet.friend_outcome) is not None:
        raise AlreadyConfirmed("you already confirmed this challenge", details=details)
    raise PacketNotClaimable(f"this red packet is {packet.status.value}", details=details)


# ---------------------------------------------------------------- refunds (sweep, notification)


def refund_due(now: datetime | None = None, limit: int = 200) -> int:
    """Refund every packet left unclaimed past its window, and every claimed one whose red packet expired
    unspent (its value is back in the sender's prepaid balance). Each by a conditional UPDATE first."""
    now = now or utcnow()
    unclaimed = db.session.scalars(
        select(PersonalPacket.id)
        .where(PersonalPacket.status.in_(REFUNDABLE_UNCLAIMED), PersonalPacket.claim_deadline <= now)
        .order_by(PersonalPacket.id)
        .limit(limit)
    ).all()
    expired = db.session.scalars(
        select(PersonalPacket.id)
        .join(RedPacket, RedPacket.id == PersonalPacket.red_packet_id)
        .where(PersonalPacket.status == S.CLAIMED, RedPacket.status == RedPacketStatus.EXPIRED)
        .order_by(PersonalPacket.id)
        .limit(limit)
    ).all()
    started = 0
    for packet_id in unclaimed:
        if guarded_update(
            PersonalPacket,
            packet_id,
            PersonalPacket.status.in_(REFUNDABLE_UNCLAIMED),
            PersonalPacket.claim_deadline <= now,
            status=S.REFUNDING,
        ):
            _refund(_by_id(packet_id), reason="personal red packet unclaimed")
            started += 1
    for packet_id in expired:
        if guarded_update(PersonalPacket, packet_id, PersonalPacket.status == S.CLAIMED, status=S.REFUNDING):
            _refund(_by_id(packet_id), reason="personal red packet expired unspent")
            started += 1
    return started + _refunds_not_made(limit)


MAX_REFUND_ATTEMPTS = 3


def _refunds_not_made(limit: int) -> int:
    """Packets whose refund WeChat did not make. Closed (or failed): asked again under a new number, at
    most MAX_REFUND_ATTEMPTS times, then left to a person (a review item). Abnormal (the sender's account
    cannot take it): a review item at once — a person settles it in the merchant platform, and WeChat's
    REFUND.SUCCESS then books it as usual. The packet stays ``refunding``, its money in the sender's
    prepaid balance, until a refund succeeds. The new refunds started."""
    stuck = db.session.execute(
        select(PersonalPacket.id, Refund.id, Refund.status)
        .join(Refund, Refund.id == PersonalPacket.refund_id)
        .where(
            PersonalPacket.status == S.REFUNDING,
            Refund.status.in_([RefundStatus.CLOSED, RefundStatus.FAILED, RefundStatus.ABNORMAL]),
        )
        .order_by(PersonalPacket.id)
        .limit(limit)
    ).all()
    started = 0
    for packet_id, refund_id, refund_status in stuck:
        packet = _by_id(packet_id)
        assert packet.funding_order_id is not None
        attempts = int(
            db.session.scalar(select(func.count(Refund.id)).where(Refund.order_id == packet.funding_order_id))
            or 0
        )
        if refund_status is RefundStatus.ABNORMAL or attempts >= MAX_REFUND_ATTEMPTS:
            flag_for_review(
                merchant_id=packet.merchant_id,
                kind="personal_refund_not_made",
                reason=f"the refund of personal red packet {packet.id} to its sender is {refund_status.value}"
                + ("" if refund_status is RefundStatus.ABNORMAL else f" after {attempts} attempts"),
                reference=f"personal_packet:{packet.id}",
                details={
                    "refund_id": refund_id,
                    "amount_fen": packet.amount.fen,
                    "sender_id": packet.sender_id,
                },
            )
            continue
        refund = refund_funding_payment(
            order_id=packet.funding_order_id,
            out_refund_no=f"{FUNDING_ORDER_PREFIX}{packet.id}:{attempts + 1}",
            amount=packet.amount,
            reason=f"personal red packet refund, attempt {attempts + 1}",
        )
        # Only the sweep that still sees the closed refund moves the packet on (another rolls back).
        if not guarded_update(
            PersonalPacket,
            packet.id,
            PersonalPacket.status == S.REFUNDING,
            PersonalPacket.refund_id == refund_id,
            refund_id=refund.id,
        ):
            raise ConcurrentChange(f"personal packet {packet.id} changed meanwhile")
        started += 1
    return started


def _by_id(packet_id: int) -> PersonalPacket:
    return db.session.scalars(
        select(PersonalPacket).where(PersonalPacket.id == packet_id).execution_options(populate_existing=True)
    ).one()


def _refund(packet: PersonalPacket, *, reason: str) -> None:
    """The WeChat refund of the funding payment (our number saved now, submitted by its job after commit)."""
    assert packet.funding_order_id is not None
    refund = refund_funding_payment(
        order_id=packet.funding_order_id,
        out_refund_no=f"{FUNDING_ORDER_PREFIX}{packet.id}",
        amount=packet.amount,
        reason=reason,
    )
    guarded_update(PersonalPacket, packet.id, refund_id=refund.id)


def on_refund_succeeded(event: Event) -> None:
    """``refund.succeeded`` of a funding payment: the sender has their money back; prepaid goes out."""
    packet = _funding_packet(int(event.payload["order_id"]))
    if packet is None or packet.refund_id != event.subject_id:
        return
    if not guarded_update(
        PersonalPacket,
        packet.id,
        PersonalPacket.status == S.REFUNDING,
        status=S.REFUNDED,
        refunded_at=utcnow(),
    ):
        return
    amount = Money(int(event.payload["amount_fen"]))
    post_entry(
        key=f"personal:{packet.id}:refund",
        reason=EntryReason.PERSONAL_REFUND,
        cause_type="personal_packet",
        cause_id=str(packet.id),
        lines=[
            (prepaid_account(packet.merchant_id, packet.sender_id), -amount),
            (platform_account(AccountKind.WECHAT_CLEARING, packet.merchant_id), amount),
        ],
        merchant_id=packet.merchant_id,
        memo=f"personal red packet {packet.id} refunded to its sender",
    )


# ---------------------------------------------------------------- reads


@dataclass(frozen=True)
class Seen:
    """A packet as one consumer sees it: whether they sent or received it; the share code for its sender."""

    packet: PersonalPacket
    role: str
    share_code: str | None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.packet, name)


def seen_by(packet: PersonalPacket, consumer_id: int) -> Seen:
    sent = packet.sender_id == consumer_id
    return Seen(packet, "sent" if sent else "received", packet.share_code if sent else None)


def packet_for(*, merchant_id: int, consumer_id: int, packet_id: int, share_code: str | None) -> Seen:
    """One packet, for its sender, its friend, or whoever holds its share code (else 404, never a leak)."""
    packet = _packet(merchant_id, packet_id)
    party = consumer_id in (packet.sender_id, packet.friend_id)
    if not party and not (
        share_code and hmac.compare_digest(share_code.encode(), packet.share_code.encode())
    ):
        raise NotFound("no such personal red packet")
    return seen_by(packet, consumer_id)


def packets_of(*, merchant_id: int, consumer_id: int, limit: int = 50) -> list[Seen]:
    """The consumer's packets, sent and received, newest first."""
    return [
        seen_by(packet, consumer_id)
        for packet in db.session.scalars(
            select(PersonalPacket)
            .where(
                PersonalPacket.merchant_id == merchant_id,
                or_(PersonalPacket.sender_id == consumer_id, PersonalPacket.friend_id == consumer_id),
            )
            .order_by(PersonalPacket.id.desc())
            .limit(limit)
        )
    ]


def list_packets(
    *,
    merchant_id: int,
    status: PersonalPacketStatus | None = None,
    campaign_id: int | None = None,
    consumer_id: int | None = None,
    limit: int = 50,
    before: int | None = None,
) -> list[PersonalPacket]:
    """The merchant's packets for the console, newest first, filtered."""
    query = select(PersonalPacket).where(PersonalPacket.merchant_id == merchant_id)
    if status is not None:
        query = query.where(PersonalPacket.status == status)
    if campaign_id is not None:
        query = query.where(PersonalPacket.campaign_id == campaign_id)
    if consumer_id is not None:
        query = query.where(
            or_(PersonalPacket.sender_id == consumer_id, PersonalPacket.friend_id == consumer_id)
        )
    if before is not None:
        query = query.where(PersonalPacket.id < before)
    return list(db.session.scalars(query.order_by(PersonalPacket.id.desc()).limit(limit)))
