"""The rebate engine's invariants, as ledger checks (``flask --app wsgi ledger check`` runs them).

Each is set-wise SQL over grants, red packets and the ledger, returning violation strings (none =
clean), capped like the ledger's own checks. :func:`register` adds them to the ledger's registry.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    String,
    and_,
    case,
    cast,
    distinct,
    func,
    literal,
    not_,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.orm import aliased
from sqlalchemy.sql import ColumnElement

from app.core.calendar import beijing_day_start, beijing_month_start, beijing_week_start
from app.coupons.models import Coupon, CouponKind, CouponStatus, CouponStock
from app.extensions import db
from app.ledger.checks import MAX_LISTED, register_check
from app.ledger.models import AccountKind, EntryReason, JournalEntry, LedgerAccount, OwnerType, Posting
from app.limits.checks import Rule, register_limit
from app.limits.service import BUYER_DAY_FEN, BUYER_MONTH_FEN, BUYER_WEEK_FEN
from app.orders.models import Order, OrderStatus
from app.payments.models import AttemptStatus, PaymentAttempt
from app.pools.holdings import outstanding_by_campaign
from app.pools.models import PoolGrant
from app.rebates.models import RebateGrant
from app.rebates.rules import Beneficiary
from app.rebates.service import COUPON_DISCOUNT, DISCOUNT
from app.red_packets.models import RedPacket, RedPacketStatus

# Grants credited to the merchant (its rebate account) rather than to a consumer's pending bucket.
MERCHANT_SIDE = (Beneficiary.ISSUER_MERCHANT.value, DISCOUNT, COUPON_DISCOUNT)
# Packets that may still cost the campaign something; every other status holds nothing in reserve.
LIVE = (RedPacketStatus.ISSUED, RedPacketStatus.RESERVED)
# Entries the rebate engine writes on campaign accounts; every other entry there is funding (or a
# correction of it), so their net is what the campaign was given to spend.
ENGINE_REASONS = (
    EntryReason.RESERVE,
    EntryReason.RELEASE,
    EntryReason.RED_PACKET_REDEEM,
    EntryReason.REBATE_PENDING,
    EntryReason.CLAWBACK,
)


def _fen(column: Any) -> ColumnElement[int]:
    # Sums and differences as plain integers of fen (the Money column type refuses bare ints).
    return type_coerce(column, BigInteger)


def _capped(rows: list[str]) -> list[str]:
    if len(rows) > MAX_LISTED:
        return [*rows[:MAX_LISTED], "… more not listed"]
    return rows


def _grant_key() -> ColumnElement[str]:
    """The idempotency key of a grant's entry, as app.rebates.service._grant builds it."""
    return (
        literal("grant:")
        + cast(RebateGrant.order_id, String)
        + ":"
        + cast(RebateGrant.rule_version_id, String)
        + ":"
        + RebateGrant.rule_id
        + ":"
        + RebateGrant.beneficiary
    )


# ---------------------------------------------------------------- one credit per source event per rule


def one_credit_per_source_event() -> list[str]:
    """Each (order, rule version, rule, beneficiary) is granted once, by exactly one entry that moves
    exactly the grant's amount from its campaign to its beneficiary; clawbacks add up to ``reversed``."""
    violations: list[str] = []
    count = func.count(RebateGrant.id)
    for order_id, version_id, rule_id, beneficiary, n in db.session.execute(
        select(
            RebateGrant.order_id,
            RebateGrant.rule_version_id,
            RebateGrant.rule_id,
            RebateGrant.beneficiary,
            count,
        )
        .group_by(
            RebateGrant.order_id, RebateGrant.rule_version_id, RebateGrant.rule_id, RebateGrant.beneficiary
        )
        .having(count > 1)
        .limit(MAX_LISTED + 1)
    ):
        violations.append(
            f"order {order_id}: rule {rule_id} (version {version_id}) credited {beneficiary} {n} times"
        )

    key = _grant_key()
    for grant_id, order_id in db.session.execute(
        select(RebateGrant.id, RebateGrant.order_id)
        .outerjoin(JournalEntry, JournalEntry.idempotency_key == key)
        .where(JournalEntry.id.is_(None))
        .order_by(RebateGrant.id)
        .limit(MAX_LISTED + 1)
    ):
        violations.append(f"grant {grant_id} of order {order_id} has no ledger entry")

    grant_entry = JournalEntry.idempotency_key.like("grant:%")
    for entry_id, entry_key in db.session.execute(
        select(JournalEntry.id, JournalEntry.idempotency_key)
        .outerjoin(RebateGrant, JournalEntry.idempotency_key == key)
        .where(grant_entry, RebateGrant.id.is_(None))
        .order_by(JournalEntry.id)
        .limit(MAX_LISTED + 1)
    ):
        violations.append(f"entry {entry_id} ({entry_key}) credits a grant that was never recorded")

    # A grant entry is two legs: out of the campaign, into the beneficiary.
    legs = func.count(Posting.id)
    credits = func.sum(case((_fen(Posting.amount) > 0, 1), else_=0))
    for entry_id, entry_key, n, n_credits in db.session.execute(
        select(JournalEntry.id, JournalEntry.idempotency_key, legs, credits)
        .join(Posting, Posting.entry_id == JournalEntry.id)
        .where(grant_entry)
        .group_by(JournalEntry.id, JournalEntry.idempotency_key)
        .having(or_(legs != 2, credits != 1))
        .order_by(JournalEntry.id)
        .limit(MAX_LISTED + 1)
    ):
        violations.append(f"entry {entry_id} ({entry_key}) has {n} legs, {n_credits} of them credits")

    credit, debit = aliased(Posting), aliased(Posting)
    into, out_of = aliased(LedgerAccount), aliased(LedgerAccount)
    merchant_side = RebateGrant.beneficiary.in_(MERCHANT_SIDE)
    expected_into = case(
        (merchant_side, AccountKind.MERCHANT_REBATE.value), else_=AccountKind.CONSUMER_PENDING.value
    )
    expected_owner = case((merchant_side, RebateGrant.merchant_id), else_=RebateGrant.consumer_id)
    expected_source = case(
        (
            or_(RebateGrant.red_packet_id.is_not(None), RebateGrant.coupon_id.is_not(None)),
            AccountKind.CAMPAIGN_RESERVED.value,
        ),
        else_=AccountKind.CAMPAIGN_BUDGET.value,
    )
    for grant_id, amount, credited, into_key, out_key in db.session.execute(
        select(
            RebateGrant.id,
            _fen(RebateGrant.amount).label("amount"),
            _fen(credit.amount).label("credited"),
            into.natural_key,
            out_of.natural_key,
        )
        .join(JournalEntry, JournalEntry.idempotency_key == key)
        .join(credit, and_(credit.entry_id == JournalEntry.id, _fen(credit.amount) > 0))
        .join(into, into.id == credit.account_id)
        .join(debit, and_(debit.entry_id == JournalEntry.id, _fen(debit.amount) < 0))
        .join(out_of, out_of.id == debit.account_id)
        .where(
            or_(
                _fen(credit.amount) != _fen(RebateGrant.amount),
                _fen(debit.amount) != -_fen(RebateGrant.amount),
                type_coerce(into.kind, String) != expected_into,
                into.owner_id.is_distinct_from(expected_owner),
                type_coerce(out_of.kind, String) != expected_source,
                out_of.owner_id != RebateGrant.campaign_id,
            )
        )
        .order_by(RebateGrant.id)
        .limit(MAX_LISTED + 1)
    ):
        violations.append(
            f"grant {grant_id} of {amount} fen: its entry credits {credited} fen to {into_key} from {out_key}"
        )

    clawback = aliased(JournalEntry)
    clawed = (
        select(func.coalesce(func.sum(_fen(Posting.amount)), 0))
        .join(clawback, clawback.id == Posting.entry_id)
        .where(
            # A refund's clawback (clawback:<grant>:refund:<id>) or a risk review's rejection (…:risk:<hold>).
            clawback.idempotency_key.like(literal("clawback:") + cast(RebateGrant.id, String) + ":%"),
            _fen(Posting.amount) > 0,
        )
        .scalar_subquery()
    )
    for grant_id, amount, reversed_, clawed_fen in db.session.execute(
        select(
            RebateGrant.id,
            _fen(RebateGrant.amount).label("amount"),
            _fen(RebateGrant.reversed).label("reversed"),
            clawed,
        )
        .where(
            or_(
                _fen(RebateGrant.reversed) < 0,
                _fen(RebateGrant.reversed) > _fen(RebateGrant.amount),
                _fen(RebateGrant.reversed) != clawed,
            )
        )
        .order_by(RebateGrant.id)
        .limit(MAX_LISTED + 1)
    ):
        violations.append(
            f"grant {grant_id} of {amount} fen: reversed {reversed_} fen, clawback entries return {clawed_fen} fen"
        )
    return _capped(violations)


# ---------------------------------------------------------------- campaign never overspent


def campaign_never_overspent() -> list[str]:
    """Per campaign: budget and reserve never negative; the reserve is exactly what live packets hold;
    budget + reserve + what its grants kept (amount − reversed) equals what it was funded with."""
    balances: dict[int, dict[AccountKind, int]] = defaultdict(dict)
    funded: dict[int, int] = defaultdict(int)
    for campaign_id, kind, fen in db.session.execute(
        select(LedgerAccount.owner_id, LedgerAccount.kind, _fen(LedgerAccount.balance)).where(
            LedgerAccount.owner_type == OwnerType.CAMPAIGN
        )
    ):
        balances[campaign_id][kind] = fen
    for campaign_id, fen in db.session.execute(
        select(LedgerAccount.owner_id, func.sum(_fen(Posting.amount)))
        .join(Posting, Posting.account_id == LedgerAccount.id)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(LedgerAccount.owner_type == OwnerType.CAMPAIGN, not_(JournalEntry.reason.in_(ENGINE_REASONS)))
        .group_by(LedgerAccount.owner_id)
    ):
        funded[campaign_id] = int(fen)
    held: dict[int, int] = defaultdict(int)
    for campaign_id, fen in db.session.execute(
        select(RedPacket.campaign_id, func.sum(_fen(RedPacket.reserved)))
        .where(RedPacket.status.in_(LIVE))
        .group_by(RedPacket.campaign_id)
    ):
        held[campaign_id] += int(fen)
    # Coupons hold their worst case from issue to use (booked) or end (released): every other one holds 0.
    for campaign_id, fen in db.session.execute(
        select(Coupon.campaign_id, func.sum(_fen(Coupon.reserved))).group_by(Coupon.campaign_id)
    ):
        held[campaign_id] += int(fen)
    # Open pools hold the part of their reservation no grabbed share took over yet (app/pools).
    for campaign_id, fen in outstanding_by_campaign().items():
        held[campaign_id] += fen
    kept: dict[int, int] = {
        campaign_id: int(fen)
        for campaign_id, fen in db.session.execute(
            select(
                RebateGrant.campaign_id, func.sum(_fen(RebateGrant.amount) - _fen(RebateGrant.reversed))
            ).group_by(RebateGrant.campaign_id)
        )
    }
    violations: list[str] = []
    for campaign_id in sorted(set(balances) | set(held) | set(kept)):
        budget = balances[campaign_id].get(AccountKind.CAMPAIGN_BUDGET, 0)
        reserved = balances[campaign_id].get(AccountKind.CAMPAIGN_RESERVED, 0)
        if budget < 0 or reserved < 0:
            violations.append(f"campaign {campaign_id}: budget {budget} fen, reserved {reserved} fen")
        if reserved != held.get(campaign_id, 0):
            violations.append(
                f"campaign {campaign_id}: reserve holds {reserved} fen, live red packets "
                f"{held.get(campaign_id, 0)} fen"
            )
        granted = kept.get(campaign_id, 0)
        if budget + reserved + granted != funded[campaign_id]:
            violations.append(
                f"campaign {campaign_id}: budget {budget} + reserved {reserved} + granted {granted} fen "
                f"!= funded {funded[campaign_id]} fen"
            )
    return _capped(violations)


# ---------------------------------------------------------------- red packet reservation consistent


def red_packet_reservation_consistent() -> list[str]:
    """Only live packets hold a reservation (never negative), state and order agree, and each packet's
    ``reserved`` is what the ledger reserved for it less what it released and what its legs paid."""
    violations: list[str] = []
    live = RedPacket.status.in_(LIVE)
    for packet_id, status, fen, order_id in db.session.execute(
        select(RedPacket.id, RedPacket.status, _fen(RedPacket.reserved), RedPacket.order_id)
        .where(
            or_(
                _fen(RedPacket.reserved) < 0,
                and_(not_(live), _fen(RedPacket.reserved) != 0),
                and_(RedPacket.status == RedPacketStatus.ISSUED, RedPacket.order_id.is_not(None)),
                and_(
                    RedPacket.status.in_([RedPacketStatus.RESERVED, RedPacketStatus.REDEEMED]),
                    RedPacket.order_id.is_(None),
                ),
            )
        )
        .order_by(RedPacket.id)
        .limit(MAX_LISTED + 1)
    ):
        violations.append(
            f"red packet {packet_id} is {status.value} with {fen} fen reserved, order {order_id}"
        )

    movement = aliased(JournalEntry)
    reserve = aliased(LedgerAccount)
    through_reserve = (
        select(func.coalesce(func.sum(_fen(Posting.amount)), 0))
        .join(movement, movement.id == Posting.entry_id)
        .join(reserve, reserve.id == Posting.account_id)
        .where(
            movement.cause_type == "red_packet",
            movement.cause_id == cast(RedPacket.id, String),
            reserve.kind == AccountKind.CAMPAIGN_RESERVED,
        )
        .scalar_subquery()
    )
    paid_out = (
        select(func.coalesce(func.sum(_fen(RebateGrant.amount)), 0))
        .where(RebateGrant.red_packet_id == RedPacket.id)
        .scalar_subquery()
    )
    # A pool's packet took over its part of the pool's reservation when it was grabbed (app/pools).
    from_pool = (
        select(func.coalesce(func.sum(_fen(PoolGrant.reserved)), 0))
        .where(PoolGrant.red_packet_id == RedPacket.id)
        .scalar_subquery()
    )
    reserved_for = through_reserve + from_pool
    for packet_id, fen, moved, paid in db.session.execute(
        select(RedPacket.id, _fen(RedPacket.reserved), reserved_for, paid_out)
        .where(_fen(RedPacket.reserved) != reserved_for - paid_out)
        .order_by(RedPacket.id)
        .limit(MAX_LISTED + 1)
    ):
        violations.append(
            f"red packet {packet_id}: {fen} fen reserved, but the ledger reserved net {moved} fen "
            f"and its grants paid {paid} fen"
        )
    return _capped(violations)


# ---------------------------------------------------------------- one redemption per discount, per packet


def red_packet_redeemed_once() -> list[str]:
    """Every paid order's discount is one redemption (a ``red_packet_discount`` grant booked under its key
    as ``red_packet_redeem``, moving exactly the discount) of the packet its payment named; a packet is
    spent on one paid order at most, and a redeemed packet by exactly the redemption its order needs."""
    violations: list[str] = []
    is_discount = RebateGrant.beneficiary == DISCOUNT
    paid = Order.status == OrderStatus.PAID

    # A discount in our pricing is a red packet's, or a merchant coupon's (app.coupons): one of them.
    merchant_coupon = (
        select(Coupon.id)
        .where(Coupon.id == RebateGrant.coupon_id, Coupon.kind == CouponKind.MERCHANT_COUPON)
        .correlate(RebateGrant)
        .exists()
    )
    redemptions = (
        select(func.count(RebateGrant.id))
        .where(
            RebateGrant.order_id == Order.id,
            or_(is_discount, and_(RebateGrant.beneficiary == COUPON_DISCOUNT, merchant_coupon)),
        )
        .correlate(Order)
        .scalar_subquery()
    )
    for order_id, discount, n in db.session.execute(
        select(Order.id, _fen(Order.discount), redemptions)
        .where(paid, _fen(Order.discount) > 0, redemptions != 1)
        .order_by(Order.id)
        .limit(MAX_LISTED + 1)
    ):
        violations.append(
            f"order {order_id} paid with a {discount} fen discount has {n} red-packet redemptions"
        )

    # What _redeem books: the discount grant's entry, under the grant's key, moves exactly order.discount.
    key = _grant_key()
    moved = (
        select(func.coalesce(func.sum(_fen(Posting.amount)), 0))
        .where(Posting.entry_id == JournalEntry.id, _fen(Posting.amount) > 0)
        .correlate(JournalEntry)
        .scalar_subquery()
    )
    for grant_id, order_id, status, discount, amount, entry_id, reason, moved_fen in db.session.execute(
        select(
            RebateGrant.id,
            RebateGrant.order_id,
            Order.status,
            _fen(Order.discount),
            _fen(RebateGrant.amount),
            JournalEntry.id,
            JournalEntry.reason,
            moved,
        )
        .join(Order, Order.id == RebateGrant.order_id)
        .outerjoin(JournalEntry, JournalEntry.idempotency_key == key)
        .where(
            is_discount,
            or_(
                not_(paid),
                JournalEntry.id.is_(None),
                JournalEntry.reason != EntryReason.RED_PACKET_REDEEM,
                _fen(RebateGrant.amount) != _fen(Order.discount),
                moved != _fen(Order.discount),
            ),
        )
        .order_by(RebateGrant.id)
        .limit(MAX_LISTED + 1)
    ):
        booked = (
            "no entry" if entry_id is None else f"entry {entry_id} ({reason.value}) moving {moved_fen} fen"
        )
        violations.append(
            f"redemption grant {grant_id} of order {order_id} ({status.value}, discount {discount} fen): "
            f"grant of {amount} fen, {booked}"
        )

    # The grant is of the packet the payment named, redeemed for this very order under its own rule.
    attempt_packet = (
        select(func.min(PaymentAttempt.red_packet_id))
        .where(PaymentAttempt.order_id == RebateGrant.order_id, PaymentAttempt.status == AttemptStatus.PAID)
        .correlate(RebateGrant)
        .scalar_subquery()
    )
    for grant_id, order_id, packet_id, paid_with, status, packet_order in db.session.execute(
        select(
            RebateGrant.id,
            RebateGrant.order_id,
            RebateGrant.red_packet_id,
            attempt_packet,
            RedPacket.status,
            RedPacket.order_id,
        )
        .outerjoin(RedPacket, RedPacket.id == RebateGrant.red_packet_id)
        .where(
            is_discount,
            or_(
                RedPacket.id.is_(None),
                RedPacket.status != RedPacketStatus.REDEEMED,
                RedPacket.order_id.is_distinct_from(RebateGrant.order_id),
                RedPacket.campaign_id != RebateGrant.campaign_id,
                RedPacket.rule_version_id != RebateGrant.rule_version_id,
                RedPacket.rule_id != RebateGrant.rule_id,
                attempt_packet.is_distinct_from(RebateGrant.red_packet_id),
            ),
        )
        .order_by(RebateGrant.id)
        .limit(MAX_LISTED + 1)
    ):
        state = "missing" if status is None else f"{status.value} for order {packet_order}"
        violations.append(
            f"redemption grant {grant_id} of order {order_id} spends red packet {packet_id} ({state}); "
            f"the order was paid with red packet {paid_with}"
        )

    orders = func.count(distinct(RebateGrant.order_id))
    for packet_id, n in db.session.execute(
        select(RebateGrant.red_packet_id, orders)
        .where(is_discount, RebateGrant.red_packet_id.is_not(None))
        .group_by(RebateGrant.red_packet_id)
        .having(orders > 1)
        .order_by(RebateGrant.red_packet_id)
        .limit(MAX_LISTED + 1)
    ):
        violations.append(f"red packet {packet_id} is redeemed by {n} orders")

    # The payment side, independent of the grants: one packet, one paid order.
    paid_orders = func.count(distinct(PaymentAttempt.order_id))
    for packet_id, n in db.session.execute(
        select(PaymentAttempt.red_packet_id, paid_orders)
        .join(Order, Order.id == PaymentAttempt.order_id)
        .where(PaymentAttempt.red_packet_id.is_not(None), PaymentAttempt.status == AttemptStatus.PAID, paid)
        .group_by(PaymentAttempt.red_packet_id)
        .having(paid_orders > 1)
        .order_by(PaymentAttempt.red_packet_id)
        .limit(MAX_LISTED + 1)
    ):
        violations.append(f"red packet {packet_id} paid for {n} orders")

    # A redeemed packet was spent by its order: one redemption, or none when the order paid no discount.
    packet_redemptions = (
        select(func.count(RebateGrant.id))
        .where(RebateGrant.red_packet_id == RedPacket.id, is_discount)
        .correlate(RedPacket)
        .scalar_subquery()
    )
    needed = case((_fen(Order.discount) > 0, 1), else_=0)
    for packet_id, order_id, n in db.session.execute(
        select(RedPacket.id, RedPacket.order_id, packet_redemptions)
        .outerjoin(Order, Order.id == RedPacket.order_id)
        .where(
            RedPacket.status == RedPacketStatus.REDEEMED,
            or_(Order.id.is_(None), not_(paid), packet_redemptions != needed),
        )
        .order_by(RedPacket.id)
        .limit(MAX_LISTED + 1)
    ):
        violations.append(
            f"red packet {packet_id} is redeemed for order {order_id} but has {n} redemption grants"
        )
    return _capped(violations)


# ---------------------------------------------------------------- coupons


def coupon_reservation_consistent() -> list[str]:
    """A coupon holds a reservation only while it may still cost something (live, or used and not booked
    yet), never negative; what it holds is what the ledger reserved for it less what it released and what
    its grants paid; a stock never has more coupons than the smaller of its two sizes."""
    violations: list[str] = []
    holding = or_(
        Coupon.status.in_([CouponStatus.RESERVED, CouponStatus.SENT, CouponStatus.CLAIMED]),
        and_(Coupon.status == CouponStatus.USED, Coupon.booked_at.is_(None)),
    )
    for coupon_id, status, fen in db.session.execute(
        select(Coupon.id, Coupon.status, _fen(Coupon.reserved))
        .where(or_(_fen(Coupon.reserved) < 0, and_(not_(holding), _fen(Coupon.reserved) != 0)))
        .order_by(Coupon.id)
        .limit(MAX_LISTED + 1)
    ):
        violations.append(f"coupon {coupon_id} is {status.value} with {fen} fen reserved")

    movement = aliased(JournalEntry)
    reserve = aliased(LedgerAccount)
    through_reserve = (
        select(func.coalesce(func.sum(_fen(Posting.amount)), 0))
        .join(movement, movement.id == Posting.entry_id)
        .join(reserve, reserve.id == Posting.account_id)
        .where(
            movement.cause_type == "coupon",
            movement.cause_id == cast(Coupon.id, String),
            reserve.kind == AccountKind.CAMPAIGN_RESERVED,
        )
        .scalar_subquery()
    )
    paid_out = (
        select(func.coalesce(func.sum(_fen(RebateGrant.amount)), 0))
        .where(RebateGrant.coupon_id == Coupon.id)
        .scalar_subquery()
    )
    for coupon_id, fen, moved, paid in db.session.execute(
        select(Coupon.id, _fen(Coupon.reserved), through_reserve, paid_out)
        .where(_fen(Coupon.reserved) != through_reserve - paid_out)
        .order_by(Coupon.id)
        .limit(MAX_LISTED + 1)
    ):
        violations.append(
            f"coupon {coupon_id}: {fen} fen reserved, but the ledger reserved net {moved} fen "
            f"and its grants paid {paid} fen"
        )

    counted = (
        select(func.count(Coupon.id))
        .where(Coupon.stock_id == CouponStock.id, Coupon.status != CouponStatus.FAILED)
        .scalar_subquery()
    )
    for stock_id, issued, n, ours, theirs in db.session.execute(
        select(
            CouponStock.id,
            CouponStock.issued,
            counted,
            CouponStock.max_coupons,
            CouponStock.wechat_max_coupons,
        )
        .where(
            or_(
                CouponStock.issued != counted,
                counted > CouponStock.max_coupons,
            )
        )
        .order_by(CouponStock.id)
        .limit(MAX_LISTED + 1)
    ):
        violations.append(
            f"coupon stock {stock_id}: counter {issued}, {n} coupons, size {ours} (WeChat's {theirs})"
        )
    return _capped(violations)


def coupon_used_once() -> list[str]:
    """A booked coupon was used once on its order: one cost grant there (moved by a ``red_packet_redeem``
    entry), on a paid order; any grant of it on another order (a merchant coupon returned after a full
    refund, then used again) is fully reversed; an unbooked coupon has no grant still standing."""
    violations: list[str] = []
    cost_grants = (
        select(func.count(RebateGrant.id))
        .where(
            RebateGrant.coupon_id == Coupon.id,
            RebateGrant.order_id == Coupon.order_id,
            RebateGrant.beneficiary == COUPON_DISCOUNT,
        )
        .correlate(Coupon)
        .scalar_subquery()
    )
    current = and_(Coupon.booked_at.is_not(None), RebateGrant.order_id == Coupon.order_id)
    standing = (
        select(func.count(RebateGrant.id))
        .where(
            RebateGrant.coupon_id == Coupon.id,
            not_(current),
            _fen(RebateGrant.amount) != _fen(RebateGrant.reversed),
        )
        .correlate(Coupon)
        .scalar_subquery()
    )
    booked = Coupon.booked_at.is_not(None)
    for coupon_id, status, order_id, n_cost, n_standing in db.session.execute(
        select(Coupon.id, Coupon.status, Coupon.order_id, cost_grants, standing)
        .where(
            or_(
                and_(booked, Coupon.status != CouponStatus.USED),
                and_(booked, Coupon.order_id.is_(None)),
                and_(booked, cost_grants != 1),
                standing != 0,
            )
        )
        .order_by(Coupon.id)
        .limit(MAX_LISTED + 1)
    ):
        violations.append(
            f"coupon {coupon_id} ({status.value}, order {order_id}) has {n_cost} cost grants on its order "
            f"and {n_standing} standing grants elsewhere"
        )
    for grant_id, coupon_id, grant_order, status in db.session.execute(
        select(RebateGrant.id, RebateGrant.coupon_id, RebateGrant.order_id, Order.status)
        .join(Order, Order.id == RebateGrant.order_id)
        .where(RebateGrant.coupon_id.is_not(None), Order.status != OrderStatus.PAID)
        .order_by(RebateGrant.id)
        .limit(MAX_LISTED + 1)
    ):
        violations.append(
            f"grant {grant_id} of coupon {coupon_id} is for order {grant_order} ({status.value})"
        )
    key = _grant_key()
    for grant_id, reason in db.session.execute(
        select(RebateGrant.id, JournalEntry.reason)
        .join(JournalEntry, JournalEntry.idempotency_key == key)
        .where(
            RebateGrant.beneficiary == COUPON_DISCOUNT, JournalEntry.reason != EntryReason.RED_PACKET_REDEEM
        )
        .order_by(RebateGrant.id)
        .limit(MAX_LISTED + 1)
    ):
        violations.append(f"coupon cost grant {grant_id} was booked as {reason.value}")
    return _capped(violations)


def _buyer_grants() -> Iterator[tuple[int, int, int, datetime, int]]:
    # Every grant to a buyer counts for its campaign (scope) at its booking time, reversed or not (a
    # refund claws the money back but does not give the cap back).
    yield from db.session.execute(
        select(
            RebateGrant.merchant_id,
            RebateGrant.campaign_id,
            RebateGrant.consumer_id,
            RebateGrant.created_at,
            type_coerce(RebateGrant.amount, BigInteger),
        )
        .where(RebateGrant.beneficiary == Beneficiary.BUYER.value, RebateGrant.consumer_id.is_not(None))
        .order_by(RebateGrant.id)
        .execution_options(yield_per=1000)
    ).tuples()  # type: ignore[misc]


def register() -> None:
    """Add the rebate engine's checks to ``ledger check`` (idempotent: re-registering replaces), and the
    rules of the per-buyer cap counters to the limit-counter check."""
    for name, window_of in (
        (BUYER_DAY_FEN, beijing_day_start),
        (BUYER_WEEK_FEN, beijing_week_start),
        (BUYER_MONTH_FEN, beijing_month_start),
    ):
        register_limit(name, Rule(window_of=window_of, rows=_buyer_grants, counted="buyer grants"))
    register_check("rebates.one_credit_per_source_event", one_credit_per_source_event)
    register_check("rebates.campaign_never_overspent", campaign_never_overspent)
    register_check("rebates.red_packet_reservation_consistent", red_packet_reservation_consistent)
    register_check("rebates.red_packet_redeemed_once", red_packet_redeemed_once)
    register_check("coupons.reservation_consistent", coupon_reservation_consistent)
    register_check("coupons.used_once", coupon_used_once)
