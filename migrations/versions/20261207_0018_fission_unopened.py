"""A fission-cash grant records what of its group red packet WeChat gave back unopened (booked back to the
campaign's budget), when WeChat was last asked, and when a person was asked instead.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 18:10:00

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('pool_grants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unopened', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('unopened_asked_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('unopened_flagged_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('pool_grants', schema=None) as batch_op:
        batch_op.drop_column('unopened_flagged_at')
        batch_op.drop_column('unopened_asked_at')
        batch_op.drop_column('unopened')
