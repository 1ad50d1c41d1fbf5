"""Withdrawals remember the merchant's app they were asked from (mini-program or official-account H5);
coupon stocks may carry the mini-program task that earns one of their coupons.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 11:40:00

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('withdrawals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('appid', sa.String(length=32), nullable=True))
    with op.batch_alter_table('coupon_stocks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('task', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('coupon_stocks', schema=None) as batch_op:
        batch_op.drop_column('task')
    with op.batch_alter_table('withdrawals', schema=None) as batch_op:
        batch_op.drop_column('appid')
