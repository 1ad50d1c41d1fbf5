"""Personal two-way red packets between friends: per-campaign terms and the packets.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 11:40:00.000000

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

_STATUS = sa.Enum(
    'pending_payment', 'funded', 'awaiting_sender', 'claimed', 'refunding', 'refunded', 'closed',
    name='personalpacketstatus', native_enum=False, length=24,
)
_CHALLENGE = sa.Enum('none', 'steps', 'check_in', name='challengekind', native_enum=False, length=24)
_OUTCOME = sa.Enum('won', 'lost', name='outcome', native_enum=False, length=24)


def upgrade():
    op.create_table('personal_packet_terms',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('merchant_id', sa.BigInteger(), nullable=False),
    sa.Column('campaign_id', sa.BigInteger(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('sender_rate_bp', sa.Integer(), nullable=False),
    sa.Column('sender_cap', sa.BigInteger(), nullable=True),
    sa.Column('min_amount', sa.BigInteger(), nullable=False),
    sa.Column('max_amount', sa.BigInteger(), nullable=False),
    sa.Column('min_spend', sa.BigInteger(), nullable=False),
    sa.Column('max_order', sa.BigInteger(), nullable=False),
    sa.Column('valid_days', sa.Integer(), nullable=False),
    sa.Column('claim_hours', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_personal_packet_terms_campaign_id_campaigns')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_personal_packet_terms_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_personal_packet_terms')),
    sa.UniqueConstraint('campaign_id', name=op.f('uq_personal_packet_terms_campaign_id'))
    )
    op.create_table('personal_packets',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('merchant_id', sa.BigInteger(), nullable=False),
    sa.Column('campaign_id', sa.BigInteger(), nullable=False),
    sa.Column('sender_id', sa.BigInteger(), nullable=False),
    sa.Column('friend_id', sa.BigInteger(), nullable=True),
    sa.Column('share_code', sa.String(length=32), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('message', sa.String(length=80), nullable=False),
    sa.Column('challenge', _CHALLENGE, nullable=False),
    sa.Column('challenge_target', sa.Integer(), nullable=True),
    sa.Column('challenge_deadline', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sender_outcome', _OUTCOME, nullable=True),
    sa.Column('friend_outcome', _OUTCOME, nullable=True),
    sa.Column('sender_rate_bp', sa.Integer(), nullable=False),
    sa.Column('sender_cap', sa.BigInteger(), nullable=True),
    sa.Column('min_spend', sa.BigInteger(), nullable=False),
    sa.Column('max_order', sa.BigInteger(), nullable=False),
    sa.Column('valid_days', sa.Integer(), nullable=False),
    sa.Column('status', _STATUS, nullable=False),
    sa.Column('funding_order_id', sa.BigInteger(), nullable=True),
    sa.Column('red_packet_id', sa.BigInteger(), nullable=True),
    sa.Column('refund_id', sa.BigInteger(), nullable=True),
    sa.Column('claim_hours', sa.Integer(), nullable=False),
    sa.Column('claim_deadline', sa.DateTime(timezone=True), nullable=True),
    sa.Column('funded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('refunded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_personal_packets_campaign_id_campaigns')),
    sa.ForeignKeyConstraint(['friend_id'], ['consumers.id'], name=op.f('fk_personal_packets_friend_id_consumers')),
    sa.ForeignKeyConstraint(['funding_order_id'], ['orders.id'], name=op.f('fk_personal_packets_funding_order_id_orders')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_personal_packets_merchant_id_merchants')),
    sa.ForeignKeyConstraint(['red_packet_id'], ['red_packets.id'], name=op.f('fk_personal_packets_red_packet_id_red_packets')),
    sa.ForeignKeyConstraint(['refund_id'], ['refunds.id'], name=op.f('fk_personal_packets_refund_id_refunds')),
    sa.ForeignKeyConstraint(['sender_id'], ['consumers.id'], name=op.f('fk_personal_packets_sender_id_consumers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_personal_packets')),
    sa.UniqueConstraint('funding_order_id', name=op.f('uq_personal_packets_funding_order_id')),
    sa.UniqueConstraint('red_packet_id', name=op.f('uq_personal_packets_red_packet_id')),
    sa.UniqueConstraint('refund_id', name=op.f('uq_personal_packets_refund_id')),
    sa.UniqueConstraint('share_code', name=op.f('uq_personal_packets_share_code'))
    )
    op.create_index('ix_personal_packets_friend', 'personal_packets', ['merchant_id', 'friend_id'], unique=False)
    op.create_index('ix_personal_packets_sender', 'personal_packets', ['merchant_id', 'sender_id'], unique=False)
    op.create_index('ix_personal_packets_status_deadline', 'personal_packets', ['status', 'claim_deadline'], unique=False)


def downgrade():
    op.drop_index('ix_personal_packets_status_deadline', table_name='personal_packets')
    op.drop_index('ix_personal_packets_sender', table_name='personal_packets')
    op.drop_index('ix_personal_packets_friend', table_name='personal_packets')
    op.drop_table('personal_packets')
    op.drop_table('personal_packet_terms')
