"""Structural guards: limit counters, one payout per withdrawal, one redemption per red packet.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 06:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('limit_counters',
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
