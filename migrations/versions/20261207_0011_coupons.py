"""WeChat Pay coupons: stocks, coupons (reserved when issued, our keys saved first), what a payment's
promotion_detail says each coupon cut, the coupon products a merchant's account has; a grant's coupon.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 08:33:46.672114

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('coupon_capabilities',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('merchant_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.Enum('voucher', 'merchant_coupon', name='couponkind', native_enum=False, length=24), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.String(length=255), nullable=True),
    sa.Column('wechat_code', sa.String(length=64), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('detected_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_coupon_capabilities_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupon_capabilities')),
    sa.UniqueConstraint('merchant_id', 'kind', name=op.f('uq_coupon_capabilities_merchant_id_kind'))
    )
    op.create_table('coupon_stocks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('merchant_id', sa.BigInteger(), nullable=False),
    sa.Column('campaign_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.Enum('voucher', 'merchant_coupon', name='couponkind', native_enum=False, length=24), nullable=False),
    sa.Column('name', sa.String(length=20), nullable=False),
    sa.Column('channels', sa.JSON(), nullable=False),
    sa.Column('face_value', sa.BigInteger(), nullable=False),
    sa.Column('min_spend', sa.BigInteger(), nullable=False),
    sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('valid_until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('max_coupons', sa.Integer(), nullable=False),
    sa.Column('wechat_max_coupons', sa.Integer(), nullable=True),
    sa.Column('issued', sa.Integer(), nullable=False),
    sa.Column('no_cash', sa.Boolean(), nullable=False),
    sa.Column('wechat_stock_id', sa.String(length=32), nullable=True),
    sa.Column('out_request_no', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Enum('draft', 'created', 'running', 'paused', 'stopped', name='stockstatus', native_enum=False, length=24), nullable=False),
    sa.Column('rule_version_id', sa.BigInteger(), nullable=True),
    sa.Column('rule_id', sa.String(length=64), nullable=True),
    sa.Column('issuer_rate_bp', sa.Integer(), nullable=False),
    sa.Column('buyer_rate_bp', sa.Integer(), nullable=False),
    sa.Column('max_order', sa.BigInteger(), nullable=False),
    sa.Column('issuer_cap', sa.BigInteger(), nullable=True),
    sa.Column('buyer_cap', sa.BigInteger(), nullable=True),
    sa.Column('worst_case_cost', sa.BigInteger(), nullable=False),
    sa.Column('scope', sa.JSON(), nullable=False),
    sa.Column('last_error', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_coupon_stocks_campaign_id_campaigns')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_coupon_stocks_merchant_id_merchants')),
    sa.ForeignKeyConstraint(['rule_version_id'], ['campaign_rule_versions.id'], name=op.f('fk_coupon_stocks_rule_version_id_campaign_rule_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupon_stocks')),
    sa.UniqueConstraint('merchant_id', 'kind', 'wechat_stock_id', name=op.f('uq_coupon_stocks_merchant_id_kind_wechat_stock_id')),
    sa.UniqueConstraint('merchant_id', 'out_request_no', name=op.f('uq_coupon_stocks_merchant_id_out_request_no'))
    )
    op.create_index(op.f('ix_coupon_stocks_campaign_id'), 'coupon_stocks', ['campaign_id'], unique=False)
    op.create_index('ix_coupon_stocks_merchant_status', 'coupon_stocks', ['merchant_id', 'status'], unique=False)
    op.create_table('coupons',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('merchant_id', sa.BigInteger(), nullable=False),
    sa.Column('stock_id', sa.BigInteger(), nullable=False),
    sa.Column('campaign_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.Enum('voucher', 'merchant_coupon', name='couponkind', native_enum=False, length=24), nullable=False),
    sa.Column('consumer_id', sa.BigInteger(), nullable=False),
    sa.Column('appid', sa.String(length=32), nullable=False),
    sa.Column('openid', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.Enum('follow', 'after_payment', 'push', 'rule', 'plugin', 'direct', name='channel', native_enum=False, length=24), nullable=False),
    sa.Column('issue_key', sa.String(length=120), nullable=False),
    sa.Column('out_request_no', sa.String(length=64), nullable=False),
    sa.Column('wechat_coupon_id', sa.String(length=64), nullable=True),
    sa.Column('status', sa.Enum('reserved', 'sent', 'claimed', 'used', 'expired', 'deactivated', 'failed', name='couponstatus', native_enum=False, length=24), nullable=False),
    sa.Column('face_value', sa.BigInteger(), nullable=False),
    sa.Column('min_spend', sa.BigInteger(), nullable=False),
    sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('valid_until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('rule_version_id', sa.BigInteger(), nullable=True),
    sa.Column('rule_id', sa.String(length=64), nullable=True),
    sa.Column('issuer_rate_bp', sa.Integer(), nullable=False),
    sa.Column('buyer_rate_bp', sa.Integer(), nullable=False),
    sa.Column('max_order', sa.BigInteger(), nullable=False),
    sa.Column('issuer_cap', sa.BigInteger(), nullable=True),
    sa.Column('buyer_cap', sa.BigInteger(), nullable=True),
    sa.Column('reserved', sa.BigInteger(), nullable=False),
    sa.Column('order_id', sa.BigInteger(), nullable=True),
    sa.Column('transaction_id', sa.String(length=64), nullable=True),
    sa.Column('discount', sa.BigInteger(), nullable=True),
    sa.Column('merchant_contribute', sa.BigInteger(), nullable=True),
    sa.Column('wechat_contribute', sa.BigInteger(), nullable=True),
    sa.Column('use_request_no', sa.String(length=64), nullable=True),
    sa.Column('return_request_no', sa.String(length=64), nullable=True),
    sa.Column('deactivate_request_no', sa.String(length=64), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=255), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('booked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_coupons_campaign_id_campaigns')),
    sa.ForeignKeyConstraint(['consumer_id'], ['consumers.id'], name=op.f('fk_coupons_consumer_id_consumers')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_coupons_merchant_id_merchants')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_coupons_order_id_orders')),
    sa.ForeignKeyConstraint(['rule_version_id'], ['campaign_rule_versions.id'], name=op.f('fk_coupons_rule_version_id_campaign_rule_versions')),
    sa.ForeignKeyConstraint(['stock_id'], ['coupon_stocks.id'], name=op.f('fk_coupons_stock_id_coupon_stocks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupons')),
    sa.UniqueConstraint('merchant_id', 'issue_key', name=op.f('uq_coupons_merchant_id_issue_key')),
    sa.UniqueConstraint('merchant_id', 'kind', 'wechat_coupon_id', name=op.f('uq_coupons_merchant_id_kind_wechat_coupon_id')),
    sa.UniqueConstraint('merchant_id', 'out_request_no', name=op.f('uq_coupons_merchant_id_out_request_no'))
    )
    op.create_index('ix_coupons_consumer', 'coupons', ['consumer_id', 'status'], unique=False)
    op.create_index(op.f('ix_coupons_order_id'), 'coupons', ['order_id'], unique=False)
    op.create_index('ix_coupons_status_valid_until', 'coupons', ['status', 'valid_until'], unique=False)
    op.create_index('ix_coupons_stock_status', 'coupons', ['stock_id', 'status'], unique=False)
    op.create_index(op.f('ix_coupons_transaction_id'), 'coupons', ['transaction_id'], unique=False)
    op.create_table('coupon_promotions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('merchant_id', sa.BigInteger(), nullable=False),
    sa.Column('order_id', sa.BigInteger(), nullable=False),
    sa.Column('coupon_id', sa.BigInteger(), nullable=True),
    sa.Column('wechat_coupon_id', sa.String(length=64), nullable=False),
    sa.Column('wechat_stock_id', sa.String(length=32), nullable=True),
    sa.Column('name', sa.String(length=64), nullable=True),
    sa.Column('type', sa.String(length=16), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('merchant_contribute', sa.BigInteger(), nullable=False),
    sa.Column('wechat_contribute', sa.BigInteger(), nullable=False),
    sa.Column('other_contribute', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['coupon_id'], ['coupons.id'], name=op.f('fk_coupon_promotions_coupon_id_coupons')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_coupon_promotions_merchant_id_merchants')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_coupon_promotions_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupon_promotions')),
    sa.UniqueConstraint('order_id', 'wechat_coupon_id', name=op.f('uq_coupon_promotions_order_id_wechat_coupon_id'))
    )
    op.create_index(op.f('ix_coupon_promotions_order_id'), 'coupon_promotions', ['order_id'], unique=False)
    # A coupon's use (its cost and each leg) is booked once per order, like a red packet's.
    with op.batch_alter_table('rebate_grants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('coupon_id', sa.BigInteger(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_rebate_grants_coupon_id_order_id_beneficiary'), ['coupon_id', 'order_id', 'beneficiary'])


def downgrade():
    with op.batch_alter_table('rebate_grants', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_rebate_grants_coupon_id_order_id_beneficiary'), type_='unique')
        batch_op.drop_column('coupon_id')
    op.drop_index(op.f('ix_coupon_promotions_order_id'), table_name='coupon_promotions')
    op.drop_table('coupon_promotions')
    op.drop_index(op.f('ix_coupons_transaction_id'), table_name='coupons')
    op.drop_index('ix_coupons_stock_status', table_name='coupons')
    op.drop_index('ix_coupons_status_valid_until', table_name='coupons')
    op.drop_index(op.f('ix_coupons_order_id'), table_name='coupons')
    op.drop_index('ix_coupons_consumer', table_name='coupons')
    op.drop_table('coupons')
    op.drop_index('ix_coupon_stocks_merchant_status', table_name='coupon_stocks')
    op.drop_index(op.f('ix_coupon_stocks_campaign_id'), table_name='coupon_stocks')
    op.drop_table('coupon_stocks')
    op.drop_table('coupon_capabilities')
