"""transfers between areas and suspected moves

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 09:32:39.364942
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

import api.db


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('transfer',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('child_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('from_agency_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('from_area', sqlmodel.sql.sqltypes.AutoString(length=9), nullable=False),
    sa.Column('to_area', sqlmodel.sql.sqltypes.AutoString(length=9), nullable=False),
    sa.Column('receiving_agency_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('plan', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('notified_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('pickup_due', sa.Date(), nullable=False),
    sa.Column('next_alert_on', sa.Date(), nullable=True),
    sa.Column('alerts_sent', sa.Integer(), nullable=False),
    sa.Column('previous_transfer_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('closed_by_agency_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('closed_at', api.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('close_reason', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('created_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['child_id'], ['person.id'], ),
    sa.ForeignKeyConstraint(['from_agency_id'], ['agency.id'], ),
    sa.ForeignKeyConstraint(['previous_transfer_id'], ['transfer.id'], ),
    sa.ForeignKeyConstraint(['receiving_agency_id'], ['agency.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('transfer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_transfer_child_id'), ['child_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_transfer_from_area'), ['from_area'], unique=False)
        batch_op.create_index('ix_transfer_sweep', ['status', 'next_alert_on'], unique=False)
        batch_op.create_index(batch_op.f('ix_transfer_to_area'), ['to_area'], unique=False)

    op.create_table('suspectedmove',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('child_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('plan_flag_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('plan_area', sqlmodel.sql.sqltypes.AutoString(length=9), nullable=False),
    sa.Column('seen_area', sqlmodel.sql.sqltypes.AutoString(length=9), nullable=False),
    sa.Column('seen_by_agency_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('seen_as', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('resolution', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('created_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['child_id'], ['person.id'], ),
    sa.ForeignKeyConstraint(['plan_flag_id'], ['flag.id'], ),
    sa.ForeignKeyConstraint(['seen_by_agency_id'], ['agency.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('child_id', 'plan_area', 'seen_area')
    )
    with op.batch_alter_table('suspectedmove', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_suspectedmove_child_id'), ['child_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_suspectedmove_seen_area'), ['seen_area'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('suspectedmove', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_suspectedmove_seen_area'))
        batch_op.drop_index(batch_op.f('ix_suspectedmove_child_id'))

    op.drop_table('suspectedmove')
    with op.batch_alter_table('transfer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_transfer_to_area'))
        batch_op.drop_index('ix_transfer_sweep')
        batch_op.drop_index(batch_op.f('ix_transfer_from_area'))
        batch_op.drop_index(batch_op.f('ix_transfer_child_id'))

    op.drop_table('transfer')
