"""Messages owed to consumers, derived from the books, sent once, never without leave.

A sweep (every minute) turns facts into outbox rows, one per fact (``dedupe_key``): a red packet
received, a packet expiring within three days, a rebate that became available, a withdrawal waiting for
the consumer's confirmation (商家转账) and one that arrived. Reading facts rather than hooking every
money path keeps the money paths free of messaging, and a lost enqueue is made good by the next sweep.

A job sends each row, after its transaction commits: a mini-program subscribe message when the consumer
gave a one-time consent for its template (the consent is spent in the database before WeChat is called,
and given back only when WeChat proves nothing was sent), else an official-account template message when
they follow the account; else nothing may be sent, and the row says so (``no_channel``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from rq import Retry
from sqlalchemy import Table, select, update

from app.audit.service import Actor, record_audit
from app.consumers.models import WeChatIdentity
from app.core.db import insert_unless_exists, utcnow
from app.core.errors import InvalidInput
from app.core.money import Money
from app.extensions import db
from app.followers.models import Follower, FollowStatus
from app.gateway.clients import endpoints, http_session
from app.gateway.log import RecordingHook
from app.gateway.tokens import with_access_token
from app.merchants.models import Merchant
from app.merchants.service import merchant_secrets
from app.messages.models import (
    Channel,
    ConsumerMessage,
    MessageConsent,
    MessageKind,
    MessageStatus,
    MessageTemplate,
)
from app.payouts.models import Payout, PayoutStatus
from app.queue.after_commit import enqueue_after_commit
from app.rebates.models import GrantStatus, RebateGrant
from app.red_packets.models import RedPacket, RedPacketStatus
from wechat.errors import WeChatError
from wechat.miniprogram import MiniProgramClient
from wechat.official import OfficialAccountClient

logger = logging.getLogger("hongli.messages")

SEND_RETRY = Retry(max=5, interval=[30, 60, 300, 900, 3600])
EXPIRING_WITHIN = timedelta(days=3)
LOOK_BACK = timedelta(days=1)  # facts older than this are not announced (a sweep that was down a while)
MAX_CONSENTS = 20  # one-time consents kept per template; more taps add nothing
BEIJING = timedelta(hours=8)
# The values a template's fields may name, per kind (filled from the fact; ``fields`` maps WeChat's
# keys, e.g. "amount1", to these names).
VALUES: dict[MessageKind, tuple[str, ...]] = {
    MessageKind.RED_PACKET_RECEIVED: ("title", "amount", "min_spend", "valid_until"),
    MessageKind.RED_PACKET_EXPIRING: ("title", "amount", "valid_until"),
    MessageKind.REBATE_AVAILABLE: ("title", "amount", "time"),
    MessageKind.WITHDRAWAL_TO_CONFIRM: ("title", "amount", "time"),
    MessageKind.WITHDRAWAL_ARRIVED: ("title", "amount", "time"),
}
TITLES: dict[MessageKind, str] = {
    MessageKind.RED_PACKET_RECEIVED: "你收到一个红包",
    MessageKind.RED_PACKET_EXPIRING: "红包即将过期",
    MessageKind.REBATE_AVAILABLE: "返利已到账，可提现",
    MessageKind.WITHDRAWAL_TO_CONFIRM: "提现待确认收款",
    MessageKind.WITHDRAWAL_ARRIVED: "提现已到账",
}

_messages = cast(Table, ConsumerMessage.__table__)
_OWE_ONCE = insert_unless_exists(
    _messages,
    (
        "merchant_id",
        "consumer_id",
        "kind",
        "dedupe_key",
        "data",
        "status",
        "consent_taken",
        "attempts",
        "created_at",
    ),
    key=("merchant_id", "dedupe_key"),
)


def _yuan(amount: Money) -> str:
    return f"{amount.fen // 100}.{amount.fen % 100:02d}元"


def _when(at: datetime) -> str:
    return (at + BEIJING).strftime("%Y-%m-%d %H:%M")


# ---------------------------------------------------------------- consents and templates


def record_consents(*, merchant_id: int, consumer_id: int, results: dict[str, str]) -> dict[str, int]:
    """What ``wx.requestSubscribeMessage`` answered: one more consent per accepted template the merchant
    uses on the mini-program (others are ignored). Returns the consents now held per template."""
    used = set(
        db.session.scalars(
            select(MessageTemplate.template_id).where(
                MessageTemplate.merchant_id == merchant_id, MessageTemplate.channel == Channel.MP_SUBSCRIBE
            )
        )
    )
    held: dict[str, int] = {}
    for template_id, answer in results.items():
        if answer != "accept" or template_id not in used:
            continue
        row = db.session.scalar(
            select(MessageConsent).where(
                MessageConsent.merchant_id == merchant_id,
                MessageConsent.consumer_id == consumer_id,
                MessageConsent.template_id == template_id,
            )
        )
        if row is None:
            row = MessageConsent(
                merchant_id=merchant_id, consumer_id=consumer_id, template_id=template_id, remaining=0
            )
            db.session.add(row)
            db.session.flush()
        db.session.execute(
            update(MessageConsent)
            .where(MessageConsent.id == row.id, MessageConsent.remaining < MAX_CONSENTS)
            .values(remaining=MessageConsent.remaining + 1, updated_at=utcnow())
        )
        db.session.refresh(row)
        held[template_id] = row.remaining
    return held


def set_template(
    *,
    merchant_id: int,
    kind: MessageKind,
    channel: Channel,
    template_id: str,
    fields: dict[str, str],
    page: str,
    actor: Actor,
) -> MessageTemplate:
    unknown = sorted(set(fields.values()) - set(VALUES[kind]))
    if unknown:
        raise InvalidInput(
            f"a {kind.value} message has no value {', '.join(unknown)}",
            details={"fields": {"fields": [f"values are among: {', '.join(VALUES[kind])}"]}},
        )
    row = db.session.scalar(
        select(MessageTemplate).where(
            MessageTemplate.merchant_id == merchant_id,
            MessageTemplate.kind == kind,
            MessageTemplate.channel == channel,
        )
    )
    if row is None:
        row = MessageTemplate(merchant_id=merchant_id, kind=kind, channel=channel)
        db.session.add(row)
    row.template_id, row.fields, row.page = template_id, dict(fields), page
    db.session.flush()
    record_audit(
        actor=actor,
        action="messages.template.set",
        target_type="message_template",
        target_id=row.id,
        merchant_id=merchant_id,
        after={"kind": kind.value, "channel": channel.value, "template_id": template_id},
    )
    return row


def templates(*, merchant_id: int) -> list[MessageTemplate]:
    return list(
        db.session.scalars(
            select(MessageTemplate)
            .where(MessageTemplate.merchant_id == merchant_id)
            .order_by(MessageTemplate.id)
        )
    )


def recent(
    *, merchant_id: int, limit: int = 100, status: MessageStatus | None = None
) -> list[ConsumerMessage]:
    """The latest messages of the merchant, newest first (only those in ``status`` when given)."""
    query = select(ConsumerMessage).where(ConsumerMessage.merchant_id == merchant_id)
    if status is not None:
        query = query.where(ConsumerMessage.status == status)
    return list(db.session.scalars(query.order_by(ConsumerMessage.id.desc()).limit(limit)))


# ---------------------------------------------------------------- the sweep: facts → outbox


def collect(now: datetime | None = None, limit: int = 500) -> int:
    """Owe each consumer the messages the books say they should get; queue them. Returns rows made."""
    now = now or utcnow()
    since = now - LOOK_BACK
    wanted = {
        (merchant_id, kind)
        for merchant_id, kind in db.session.execute(select(MessageTemplate.merchant_id, MessageTemplate.kind))
    }
    if not wanted:
        return 0
    facts: list[tuple[int, int, MessageKind, str, dict[str, Any]]] = []
    for packet in db.session.scalars(
        select(RedPacket).where(RedPacket.created_at >= since).order_by(RedPacket.id).limit(limit)
    ):
        facts.append(
            (
                packet.merchant_id,
                packet.consumer_id,
                MessageKind.RED_PACKET_RECEIVED,
                f"red_packet_received:{packet.id}",
                {
                    "amount": _yuan(packet.face_value),
                    "min_spend": _yuan(packet.min_spend),
                    "valid_until": _when(packet.valid_until),
                },
            )
        )
    for packet in db.session.scalars(
        select(RedPacket)
        .where(
            RedPacket.status == RedPacketStatus.ISSUED,
            RedPacket.valid_until > now,
            RedPacket.valid_until <= now + EXPIRING_WITHIN,
        )
        .order_by(RedPacket.id)
        .limit(limit)
    ):
        facts.append(
            (
                packet.merchant_id,
                packet.consumer_id,
                MessageKind.RED_PACKET_EXPIRING,
                f"red_packet_expiring:{packet.id}",
                {"amount": _yuan(packet.face_value), "valid_until": _when(packet.valid_until)},
            )
        )
    for grant in db.session.scalars(
        select(RebateGrant)
        .where(
            RebateGrant.status == GrantStatus.AVAILABLE,
            RebateGrant.settled_at >= since,
            RebateGrant.consumer_id.is_not(None),
        )
        .order_by(RebateGrant.id)
        .limit(limit)
    ):
        assert grant.consumer_id is not None and grant.settled_at is not None
        facts.append(
            (
                grant.merchant_id,
                grant.consumer_id,
                MessageKind.REBATE_AVAILABLE,
                f"rebate_available:{grant.id}",
                {"amount": _yuan(grant.amount - grant.reversed), "time": _when(grant.settled_at)},
            )
        )
    for payout in db.session.scalars(
        select(Payout)
        .where(
            Payout.status == PayoutStatus.ACCEPTED,
            Payout.package_info.is_not(None),
            Payout.accepted_at >= since,
        )
        .order_by(Payout.id)
        .limit(limit)
    ):
        assert payout.accepted_at is not None
        facts.append(
            (
                payout.merchant_id,
                payout.consumer_id,
                MessageKind.WITHDRAWAL_TO_CONFIRM,
                f"withdrawal_to_confirm:{payout.id}:{payout.attempt}",
                {"amount": _yuan(payout.amount), "time": _when(payout.accepted_at)},
            )
        )
    for payout in db.session.scalars(
        select(Payout)
        .where(Payout.status == PayoutStatus.SUCCEEDED, Payout.finished_at >= since)
        .order_by(Payout.id)
        .limit(limit)
    ):
        assert payout.finished_at is not None
        facts.append(
            (
                payout.merchant_id,
                payout.consumer_id,
                MessageKind.WITHDRAWAL_ARRIVED,
                f"withdrawal_arrived:{payout.id}",
                {"amount": _yuan(payout.amount), "time": _when(payout.finished_at)},
            )
        )
    made = 0
    for merchant_id, consumer_id, kind, key, data in facts:
        if (merchant_id, kind) not in wanted:
            continue
        message_id = db.session.execute(
            _OWE_ONCE,
            {
                "merchant_id": merchant_id,
                "consumer_id": consumer_id,
                "kind": kind,
                "dedupe_key": key,
                "data": {"title": TITLES[kind], **data},
                "status": MessageStatus.PENDING,
                "consent_taken": False,
                "attempts": 0,
                "created_at": now,
            },
        ).scalar()
        if message_id is not None:
            enqueue_after_commit("jobs.messages.send", int(message_id), retry=SEND_RETRY)
            made += 1
    return made


# ---------------------------------------------------------------- sending


def _template(merchant_id: int, kind: MessageKind, channel: Channel) -> MessageTemplate | None:
    return db.session.scalar(
        select(MessageTemplate).where(
            MessageTemplate.merchant_id == merchant_id,
            MessageTemplate.kind == kind,
            MessageTemplate.channel == channel,
        )
    )


def _openid(consumer_id: int, appid: str | None) -> str | None:
    if not appid:
        return None
    return db.session.scalar(
        select(WeChatIdentity.openid).where(
            WeChatIdentity.consumer_id == consumer_id, WeChatIdentity.appid == appid
        )
    )


def _filled(template: MessageTemplate, data: dict[str, Any]) -> dict[str, str]:
    return {key: str(data.get(name, ""))[:20] for key, name in template.fields.items()}


def _take_consent(message: ConsumerMessage, template_id: str) -> bool:
    """Spend one consent on ``message`` (once: a retried send reuses the one it took)."""
    if message.consent_taken:
        return True
    taken = db.session.execute(
        update(MessageConsent)
        .where(
            MessageConsent.merchant_id == message.merchant_id,
            MessageConsent.consumer_id == message.consumer_id,
            MessageConsent.template_id == template_id,
            MessageConsent.remaining > 0,
        )
        .values(remaining=MessageConsent.remaining - 1, updated_at=utcnow())
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        return False
    db.session.execute(
        update(ConsumerMessage).where(ConsumerMessage.id == message.id).values(consent_taken=True)
    )
    return True


def _give_back_consent(message: ConsumerMessage, template_id: str) -> None:
    db.session.execute(
        update(MessageConsent)
        .where(
            MessageConsent.merchant_id == message.merchant_id,
            MessageConsent.consumer_id == message.consumer_id,
            MessageConsent.template_id == template_id,
        )
        .values(remaining=MessageConsent.remaining + 1, updated_at=utcnow())
    )
    db.session.execute(
        update(ConsumerMessage).where(ConsumerMessage.id == message.id).values(consent_taken=False)
    )


def _finish(
    message_id: int, status: MessageStatus, channel: Channel | None, error: str | None = None
) -> None:
    db.session.execute(
        update(ConsumerMessage)
        .where(ConsumerMessage.id == message_id, ConsumerMessage.status == MessageStatus.PENDING)
        .values(
            status=status,
            channel=channel,
            last_error=error[:255] if error else None,
            sent_at=utcnow() if status is MessageStatus.SENT else None,
        )
    )


def send(message_id: int) -> MessageStatus:
    """Send one owed message by the best channel the consumer allows; commits as it goes (a job).

    Raises WeChatError for an outcome worth retrying (the job's retry sends it again, reusing the
    consent already spent on it)."""
    message = db.session.get(ConsumerMessage, message_id)
    if message is None or message.status is not MessageStatus.PENDING:
        return message.status if message else MessageStatus.FAILED
    merchant = db.session.get(Merchant, message.merchant_id)
    assert merchant is not None
    db.session.execute(
        update(ConsumerMessage)
        .where(ConsumerMessage.id == message.id)
        .values(attempts=ConsumerMessage.attempts + 1)
    )
    secrets, hook = merchant_secrets(merchant), RecordingHook(merchant.id)
    mp = _template(merchant.id, message.kind, Channel.MP_SUBSCRIBE)
    mp_openid = _openid(message.consumer_id, merchant.mp_appid)
    if mp is not None and mp_openid is not None and _take_consent(message, mp.template_id):
        client = MiniProgramClient(
            merchant.mp_appid or "", secrets.mp_secret, endpoints(), session=http_session(), hook=hook
        )
        sent = _deliver(
            message,
            Channel.MP_SUBSCRIBE,
            lambda: with_access_token(
                merchant,
                "mp",
                lambda token: client.send_subscribe_message(
                    token,
                    touser=mp_openid,
                    template_id=mp.template_id,
                    data=_filled(mp, message.data),
                    page=mp.page,
                ),
            ),
            # 43101: WeChat holds no consent for it after all (spent): the next channel may carry it.
            settles={"43101": None},
            refused=lambda: _give_back_consent(message, mp.template_id),
        )
        if sent is not None:
            return sent
    oa = _template(merchant.id, message.kind, Channel.OA_TEMPLATE)
    following = db.session.scalar(
        select(Follower.openid).where(
            Follower.merchant_id == merchant.id,
            Follower.consumer_id == message.consumer_id,
            Follower.status == FollowStatus.FOLLOWING,
        )
    )
    if oa is None or following is None or not merchant.oa_appid:
        _finish(message.id, MessageStatus.NO_CHANNEL, None)
        db.session.commit()
        return MessageStatus.NO_CHANNEL
    client_oa = OfficialAccountClient(
        merchant.oa_appid, secrets.oa_secret, endpoints(), session=http_session(), hook=hook
    )
    outcome = _deliver(
        message,
        Channel.OA_TEMPLATE,
        lambda: with_access_token(
            merchant,
            "oa",
            lambda token: client_oa.send_template_message(
                token,
                touser=following,
                template_id=oa.template_id,
                data=_filled(oa, message.data),
                url=oa.page,
            ),
        ),
        settles={"43004": MessageStatus.NO_CHANNEL},  # they stopped following meanwhile
    )
    return outcome or MessageStatus.NO_CHANNEL


def _deliver(
    message: ConsumerMessage,
    channel: Channel,
    call: Callable[[], object],
    *,
    settles: dict[str, MessageStatus | None],
    refused: Callable[[], None] | None = None,
) -> MessageStatus | None:
    """Commit what was decided so far, make the WeChat call, and record what its answer settles: sent;
    a code in ``settles`` (None: not settled, the next channel may try); otherwise failed for good (after
    ``refused``). Any other ambiguous or retryable answer is raised for the job's retry."""
    db.session.commit()  # a consent spent on it is spent before WeChat is asked: never twice for two sends
    try:
        call()
    except WeChatError as exc:
        if exc.code in settles:  # WeChat's own answer, whatever class an unknown errcode gets
            status = settles[exc.code]
            if status is None:
                return None
        elif exc.ambiguous or exc.retryable:
            raise
        else:
            status = MessageStatus.FAILED
        if status is MessageStatus.FAILED and refused is not None:
            refused()
        _finish(message.id, status, channel, f"{exc.code}: {exc}")
        db.session.commit()
        return status
    _finish(message.id, MessageStatus.SENT, channel)
    db.session.commit()
    return MessageStatus.SENT
