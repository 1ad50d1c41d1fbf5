"""Pools may pay each share as one fission cash red packet (sendgroupredpack): the pool's group size, a
payout's group size, the grant's fallback mark, and whether a merchant's account has cash red packets.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 12:20:00

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('payout_capabilities',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('merchant_id', sa.BigInteger(), nullable=False),
    sa.Column('product', sa.Enum('cash_red_packet', name='payoutproduct', native_enum=False, length=24), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.String(length=255), nullable=True),
    sa.Column('wechat_code', sa.String(length=64), nullable=True),
    sa.Column('detected_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_payout_capabilities_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payout_capabilities')),
    sa.UniqueConstraint('merchant_id', 'product', name=op.f('uq_payout_capabilities_merchant_id_product'))
    )
    with op.batch_alter_table('pools', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fission_count', sa.Integer(), nullable=True))
    with op.batch_alter_table('pool_grants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fallback_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('group_size', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.drop_column('group_size')
    with op.batch_alter_table('pool_grants', schema=None) as batch_op:
        batch_op.drop_column('fallback_at')
    with op.batch_alter_table('pools', schema=None) as batch_op:
        batch_op.drop_column('fission_count')
    op.drop_table('payout_capabilities')
