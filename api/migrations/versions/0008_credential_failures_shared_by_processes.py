"""failed sign-in attempts counted in the database

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 04:10:00

Each API process kept its own count of failed credential attempts, so a guesser behind a load
balancer had one allowance per process, and a restart gave a fresh one. The counts now live in
one table that every process reads and writes.
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('credentialfailure',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('tokens', sa.Float(), nullable=False),
    sa.Column('as_of', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_index(op.f('ix_credentialfailure_as_of'), 'credentialfailure', ['as_of'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_credentialfailure_as_of'), table_name='credentialfailure')
    op.drop_table('credentialfailure')
