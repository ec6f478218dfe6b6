"""household risk alerts; what the publisher knew of the child's NHS number and ethnicity

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 11:50:00

A new table and two nullable columns on `flag` (added in place, so SQLite does not rebuild a
table that others refer to). Existing flags are filled from the child's record as it stands,
the best that can be known after the fact.
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

import api.db


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('riskalert',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('person_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('child_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('history_flag_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['child_id'], ['person.id'], ),
    sa.ForeignKeyConstraint(['history_flag_id'], ['flag.id'], ),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('person_id', 'child_id', 'history_flag_id')
    )
    op.create_index(op.f('ix_riskalert_child_id'), 'riskalert', ['child_id'], unique=False)
    op.create_index(op.f('ix_riskalert_history_flag_id'), 'riskalert', ['history_flag_id'],
                    unique=False)
    op.create_index(op.f('ix_riskalert_person_id'), 'riskalert', ['person_id'], unique=False)
    op.add_column('flag', sa.Column('subject_nhs_number_given', sa.Boolean(), nullable=True))
    op.add_column('flag', sa.Column('subject_ethnicity_given', sa.Boolean(), nullable=True))
    op.execute("UPDATE flag SET "
               "subject_nhs_number_given = (SELECT person.nhs_number IS NOT NULL FROM person "
               "WHERE person.id = flag.child_id), "
               "subject_ethnicity_given = (SELECT person.ethnicity IS NOT NULL FROM person "
               "WHERE person.id = flag.child_id)")


def downgrade() -> None:
    with op.batch_alter_table('flag') as batch:
        batch.drop_column('subject_ethnicity_given')
        batch.drop_column('subject_nhs_number_given')
    op.drop_index(op.f('ix_riskalert_person_id'), table_name='riskalert')
    op.drop_index(op.f('ix_riskalert_history_flag_id'), table_name='riskalert')
    op.drop_index(op.f('ix_riskalert_child_id'), table_name='riskalert')
    op.drop_table('riskalert')
