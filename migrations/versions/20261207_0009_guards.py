"""Structural guards: limit counters, one payout per withdrawal, one redemption per red packet.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 06:30:00

"""
from collections import defaultdict
from datetime import datetime, timedelta, timezone

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


# Beijing time (UTC+8, no daylight saving): where limits' days, ISO weeks and months begin. Written out
# here, not imported: a migration must keep meaning what it meant when the app code moves on.
_BEIJING = timedelta(hours=8)
_UTC = timezone.utc


def _day(at):
    local = at + _BEIJING
    return datetime(local.year, local.month, local.day, tzinfo=_UTC) - _BEIJING


def _week(at):
    day = _day(at)
    return day - timedelta(days=(day + _BEIJING).weekday())


def _month(at):
    local = at + _BEIJING
    return datetime(local.year, local.month, 1, tzinfo=_UTC) - _BEIJING


def _aware(at):
    return at.replace(tzinfo=_UTC) if at.tzinfo is None else at.astimezone(_UTC)


def _refuse_duplicates(bind, sql, what):
    found = bind.execute(sa.text(sql)).fetchall()
    if found:
        raise RuntimeError(
            f"cannot add the guard {what}: these rows break it already {[tuple(r) for r in found[:20]]}. "
            "They are money to reconcile by hand (see `flask --app wsgi payouts check` and docs/payouts.md); "
            "resolve them, then upgrade again."
        )


def _backfill(bind, counters):
    """Counters for what was used before they existed, so limits and `ledger check` start from the truth."""
    used = defaultdict(int)
    withdrawals = bind.execute(sa.text(
        "SELECT merchant_id, consumer_id, created_at, amount FROM withdrawals WHERE status <> 'rejected'"
    ))
    for merchant_id, consumer_id, created_at, amount in withdrawals:
        at = _aware(created_at if isinstance(created_at, datetime) else datetime.fromisoformat(created_at))
        used[(merchant_id, 'withdrawal.daily_fen', 0, consumer_id, _day(at))] += int(amount)
    grants = bind.execute(sa.text(
        "SELECT merchant_id, campaign_id, consumer_id, created_at, amount FROM rebate_grants "
        "WHERE beneficiary = 'buyer' AND consumer_id IS NOT NULL"
    ))
    for merchant_id, campaign_id, consumer_id, created_at, amount in grants:
        at = _aware(created_at if isinstance(created_at, datetime) else datetime.fromisoformat(created_at))
        for name, start in (('day', _day(at)), ('week', _week(at)), ('month', _month(at))):
            used[(merchant_id, f'campaign.buyer_{name}_fen', campaign_id, consumer_id, start)] += int(amount)
    now = datetime.now(_UTC)
    rows = [
        {'merchant_id': m, 'name': n, 'scope_id': sc, 'subject_id': su, 'window_start': w, 'used': u, 'updated_at': now}
        for (m, n, sc, su, w), u in used.items()
    ]
    if rows:
        op.bulk_insert(counters, rows)


def upgrade():
    bind = op.get_bind()
    _refuse_duplicates(
        bind,
        "SELECT source_type, source_id, COUNT(*) FROM payouts GROUP BY source_type, source_id HAVING COUNT(*) > 1",
        "one payout per withdrawal",
    )
    _refuse_duplicates(
        bind,
        "SELECT red_packet_id, beneficiary, COUNT(*) FROM rebate_grants WHERE red_packet_id IS NOT NULL "
        "GROUP BY red_packet_id, beneficiary HAVING COUNT(*) > 1",
        "one redemption per red packet",
    )
    counters = op.create_table('limit_counters',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('merchant_id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('scope_id', sa.BigInteger(), nullable=False),
    sa.Column('subject_id', sa.BigInteger(), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('used >= 0', name=op.f('ck_limit_counters_used_not_negative')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_limit_counters_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_limit_counters')),
    sa.UniqueConstraint('merchant_id', 'name', 'scope_id', 'subject_id', 'window_start', name='uq_limit_counters_window')
    )
    _backfill(bind, counters)
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f('uq_payouts_source_type_source_id'), ['source_type', 'source_id'])
    with op.batch_alter_table('rebate_grants', schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f('uq_rebate_grants_red_packet_id_beneficiary'), ['red_packet_id', 'beneficiary'])


def downgrade():
    with op.batch_alter_table('rebate_grants', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_rebate_grants_red_packet_id_beneficiary'), type_='unique')
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_payouts_source_type_source_id'), type_='unique')
    op.drop_table('limit_counters')
