"""console sign-out ends every copy of the session

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 18:30:00

Signing out of the web console only deleted the cookie in the browser: a copy of it stayed
valid, and was re-signed on each use, for up to the session's 12 hours. Each person now has a
`console_generation`, carried in their session cookie and raised by signing out; a cookie
carrying an older one is refused. Everyone starts at 0; the cookies issued before this change
carry none and are refused, so people sign in once more.
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('console_generation', sa.Integer(), server_default='0',
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.drop_column('console_generation')
