"""possible matches, identity merges, person matching indexes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 09:58:11.969326

Only new tables, new indexes (person birth date and mother's NHS number for matching, the
people named on a flag) and one new nullable column on `person` (added in place, so SQLite
does not rebuild a table that others refer to).
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

import api.db


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('possiblematch',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('person_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('other_person_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('area', sqlmodel.sql.sqltypes.AutoString(length=9), nullable=False),
    sa.Column('other_area', sqlmodel.sql.sqltypes.AutoString(length=9), nullable=True),
    sa.Column('proposed_by_agency_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('decided_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('decided_at', api.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('decision_reason', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('created_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['other_person_id'], ['person.id'], ),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ),
    sa.ForeignKeyConstraint(['proposed_by_agency_id'], ['agency.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('person_id', 'other_person_id')
    )
    with op.batch_alter_table('possiblematch', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_possiblematch_other_area'), ['other_area'], unique=False)
        batch_op.create_index(batch_op.f('ix_possiblematch_other_person_id'), ['other_person_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_possiblematch_person_id'), ['person_id'], unique=False)
        batch_op.create_index('ix_possiblematch_queue', ['status', 'area'], unique=False)

    op.create_table('identitymerge',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('match_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('kept_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('merged_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('moved', sa.JSON(), nullable=False),
    sa.Column('filled', sa.JSON(), nullable=False),
    sa.Column('merged_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('merged_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('unmerged_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('unmerged_at', api.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('unmerge_reason', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.ForeignKeyConstraint(['kept_id'], ['person.id'], ),
    sa.ForeignKeyConstraint(['match_id'], ['possiblematch.id'], ),
    sa.ForeignKeyConstraint(['merged_id'], ['person.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('identitymerge', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_identitymerge_kept_id'), ['kept_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_identitymerge_match_id'), ['match_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_identitymerge_merged_id'), ['merged_id'], unique=False)

    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.add_column(sa.Column('merged_into_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True))
        batch_op.create_index(batch_op.f('ix_person_birth_date'), ['birth_date'], unique=False)
        batch_op.create_index(batch_op.f('ix_person_merged_into_id'), ['merged_into_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_person_mother_nhs_number'), ['mother_nhs_number'], unique=False)

    with op.batch_alter_table('personlink', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_personlink_flag_id'), ['flag_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('personlink', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_personlink_flag_id'))

    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_person_mother_nhs_number'))
        batch_op.drop_index(batch_op.f('ix_person_merged_into_id'))
        batch_op.drop_index(batch_op.f('ix_person_birth_date'))
        batch_op.drop_column('merged_into_id')

    with op.batch_alter_table('identitymerge', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_identitymerge_merged_id'))
        batch_op.drop_index(batch_op.f('ix_identitymerge_match_id'))
        batch_op.drop_index(batch_op.f('ix_identitymerge_kept_id'))

    op.drop_table('identitymerge')
    with op.batch_alter_table('possiblematch', schema=None) as batch_op:
        batch_op.drop_index('ix_possiblematch_queue')
        batch_op.drop_index(batch_op.f('ix_possiblematch_person_id'))
        batch_op.drop_index(batch_op.f('ix_possiblematch_other_person_id'))
        batch_op.drop_index(batch_op.f('ix_possiblematch_other_area'))

    op.drop_table('possiblematch')
