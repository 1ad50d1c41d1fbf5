"""Risk control: policies, decisions, linked accounts (links, group members), held rewards.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 12:10:00

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
_ACTION = sa.Enum('claim', 'reward', 'withdraw', name='action', native_enum=False, length=16)
_OUTCOME = sa.Enum('allow', 'limit', 'hold', 'block', name='outcome', native_enum=False, length=16)
_LINK = sa.Enum('device', 'ip', 'payer', 'phone', name='linkkind', native_enum=False, length=16)
_HOLD = sa.Enum('held', 'approved', 'rejected', name='holdstatus', native_enum=False, length=16)


def upgrade():
    op.create_table('risk_policies',
    sa.Column('id', _ID, nullable=False),
    sa.Column('merchant_id', sa.BigInteger(), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_risk_policies_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_risk_policies')),
    sa.UniqueConstraint('merchant_id', name=op.f('uq_risk_policies_merchant_id'))
    )
    op.create_table('risk_decisions',
    sa.Column('id', _ID, nullable=False),
    sa.Column('merchant_id', sa.BigInteger(), nullable=False),
    sa.Column('consumer_id', sa.BigInteger(), nullable=False),
    sa.Column('action', _ACTION, nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('reference', sa.String(length=120), nullable=True),
    sa.Column('outcome', _OUTCOME, nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('scores', sa.JSON(), nullable=False),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('device', sa.String(length=64), nullable=True),
    sa.Column('facts', sa.JSON(), nullable=False),
    sa.Column('policy_version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['consumer_id'], ['consumers.id'], name=op.f('fk_risk_decisions_consumer_id_consumers')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_risk_decisions_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_risk_decisions'))
    )
    op.create_index('ix_risk_decisions_consumer_at', 'risk_decisions', ['consumer_id', 'created_at'], unique=False)
    op.create_index('ix_risk_decisions_merchant_at', 'risk_decisions', ['merchant_id', 'created_at'], unique=False)
    op.create_table('risk_links',
    sa.Column('id', _ID, nullable=False),
    sa.Column('merchant_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', _LINK, nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('consumer_id', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['consumer_id'], ['consumers.id'], name=op.f('fk_risk_links_consumer_id_consumers')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_risk_links_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_risk_links')),
    sa.UniqueConstraint('merchant_id', 'kind', 'digest', 'consumer_id', name=op.f('uq_risk_links_merchant_id_kind_digest_consumer_id'))
    )
    op.create_index('ix_risk_links_consumer', 'risk_links', ['consumer_id'], unique=False)
    op.create_table('risk_members',
    sa.Column('id', _ID, nullable=False),
    sa.Column('merchant_id', sa.BigInteger(), nullable=False),
    sa.Column('consumer_id', sa.BigInteger(), nullable=False),
    sa.Column('group_id', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['consumer_id'], ['consumers.id'], name=op.f('fk_risk_members_consumer_id_consumers')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_risk_members_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_risk_members')),
    sa.UniqueConstraint('merchant_id', 'consumer_id', name=op.f('uq_risk_members_merchant_id_consumer_id'))
    )
    op.create_index('ix_risk_members_group', 'risk_members', ['merchant_id', 'group_id'], unique=False)
    op.create_table('risk_holds',
    sa.Column('id', _ID, nullable=False),
    sa.Column('merchant_id', sa.BigInteger(), nullable=False),
    sa.Column('consumer_id', sa.BigInteger(), nullable=False),
    sa.Column('order_id', sa.BigInteger(), nullable=False),
    sa.Column('decision_id', sa.BigInteger(), nullable=True),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('status', _HOLD, nullable=False),
    sa.Column('resolved_by_staff_id', sa.BigInteger(), nullable=True),
    sa.Column('resolution', sa.String(length=255), nullable=True),
    sa.Column('reversed_fen', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['consumer_id'], ['consumers.id'], name=op.f('fk_risk_holds_consumer_id_consumers')),
    sa.ForeignKeyConstraint(['decision_id'], ['risk_decisions.id'], name=op.f('fk_risk_holds_decision_id_risk_decisions')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_risk_holds_merchant_id_merchants')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_risk_holds_order_id_orders')),
    sa.ForeignKeyConstraint(['resolved_by_staff_id'], ['staff_accounts.id'], name=op.f('fk_risk_holds_resolved_by_staff_id_staff_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_risk_holds')),
    sa.UniqueConstraint('merchant_id', 'order_id', name=op.f('uq_risk_holds_merchant_id_order_id'))
    )
    op.create_index('ix_risk_holds_merchant_status', 'risk_holds', ['merchant_id', 'status'], unique=False)


def downgrade():
    op.drop_index('ix_risk_holds_merchant_status', table_name='risk_holds')
    op.drop_table('risk_holds')
    op.drop_index('ix_risk_members_group', table_name='risk_members')
    op.drop_table('risk_members')
    op.drop_index('ix_risk_links_consumer', table_name='risk_links')
    op.drop_table('risk_links')
    op.drop_index('ix_risk_decisions_merchant_at', table_name='risk_decisions')
    op.drop_index('ix_risk_decisions_consumer_at', table_name='risk_decisions')
    op.drop_table('risk_decisions')
    op.drop_table('risk_policies')
