"""forwarding: subscriptions and delivery outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 09:15:14.681843
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

import api.db


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('subscription',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('agency_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('categories', sa.JSON(), nullable=True),
    sa.Column('areas', sa.JSON(), nullable=True),
    sa.Column('mode', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('secret', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('disabled_reason', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('created_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['agency_id'], ['agency.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('subscription', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscription_agency_id'), ['agency_id'], unique=False)

    op.create_table('delivery',
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('event_type', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('recipient_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('subscription_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('mode', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('flag_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('disclosure_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('lease_until', api.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('delivered_at', api.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ack_status', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=True),
    sa.Column('ack_outcome', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=True),
    sa.Column('acked_at', api.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('acknowledge_by', api.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('escalations_sent', sa.Integer(), nullable=False),
    sa.Column('created_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['disclosure_id'], ['disclosure.id'], ),
    sa.ForeignKeyConstraint(['flag_id'], ['flag.id'], ),
    sa.ForeignKeyConstraint(['recipient_id'], ['agency.id'], ),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscription.id'], ),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('id')
    )
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.create_index('ix_delivery_ack_due', ['ack_status', 'acknowledge_by'], unique=False)
        batch_op.create_index('ix_delivery_due', ['status', 'mode', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_delivery_event_id'), ['event_id'], unique=False)
        batch_op.create_index('ix_delivery_feed', ['recipient_id', 'mode', 'seq'], unique=False)
        batch_op.create_index(batch_op.f('ix_delivery_flag_id'), ['flag_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_flag_id'))
        batch_op.drop_index('ix_delivery_feed')
        batch_op.drop_index(batch_op.f('ix_delivery_event_id'))
        batch_op.drop_index('ix_delivery_due')
        batch_op.drop_index('ix_delivery_ack_due')

    op.drop_table('delivery')
    with op.batch_alter_table('subscription', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscription_agency_id'))

    op.drop_table('subscription')
