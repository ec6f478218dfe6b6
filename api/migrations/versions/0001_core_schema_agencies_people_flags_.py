"""core schema: agencies, people, flags, disclosures, audit

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 09:06:31.781943
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

import api.db


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('agency',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('area', sqlmodel.sql.sqltypes.AutoString(length=9), nullable=False),
    sa.Column('client_secret_hash', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('agency', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agency_area'), ['area'], unique=False)
        batch_op.create_index(batch_op.f('ix_agency_kind'), ['kind'], unique=False)

    op.create_table('auditevent',
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('actor_agency', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('child_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    sa.Column('flag_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    sa.Column('recipient', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('lawful_basis', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
    sa.Column('policy_rule', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('policy_version', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('prev_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('hash')
    )
    with op.batch_alter_table('auditevent', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auditevent_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_auditevent_child_id'), ['child_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_auditevent_flag_id'), ['flag_id'], unique=False)

    op.create_table('idempotencyrecord',
    sa.Column('principal', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('request_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('response_body', sa.JSON(), nullable=False),
    sa.Column('created_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('principal', 'key')
    )
    op.create_table('person',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('nhs_number', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True),
    sa.Column('given_name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('family_name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('birth_date', sa.Date(), nullable=True),
    sa.Column('sex', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True),
    sa.Column('postcode', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
    sa.Column('ethnicity', sqlmodel.sql.sqltypes.AutoString(length=2), nullable=True),
    sa.Column('disability', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('unborn', sa.Boolean(), nullable=False),
    sa.Column('unborn_key', sqlmodel.sql.sqltypes.AutoString(length=21), nullable=True),
    sa.Column('mother_nhs_number', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True),
    sa.Column('expected_delivery_date', sa.Date(), nullable=True),
    sa.Column('created_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('nhs_number'),
    sa.UniqueConstraint('unborn_key')
    )
    op.create_table('signingkey',
    sa.Column('kid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('private_pem', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('public_jwk', sa.JSON(), nullable=False),
    sa.Column('created_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('retired_at', api.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('kid')
    )
    op.create_table('app_user',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('password_hash', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('agency_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['agency_id'], ['agency.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('username')
    )
    op.create_table('flag',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('child_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('publisher_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('created_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['child_id'], ['person.id'], ),
    sa.ForeignKeyConstraint(['publisher_id'], ['agency.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('flag', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_flag_category'), ['category'], unique=False)
        batch_op.create_index(batch_op.f('ix_flag_child_id'), ['child_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_flag_publisher_id'), ['publisher_id'], unique=False)

    op.create_table('localidentifier',
    sa.Column('agency_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('local_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('person_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['agency_id'], ['agency.id'], ),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ),
    sa.PrimaryKeyConstraint('agency_id', 'local_id')
    )
    with op.batch_alter_table('localidentifier', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_localidentifier_person_id'), ['person_id'], unique=False)

    op.create_table('relationship',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('child_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('agency_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('start', sa.Date(), nullable=False),
    sa.Column('end', sa.Date(), nullable=True),
    sa.Column('created_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['agency_id'], ['agency.id'], ),
    sa.ForeignKeyConstraint(['child_id'], ['person.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('relationship', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_relationship_agency_id'), ['agency_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_relationship_child_id'), ['child_id'], unique=False)

    op.create_table('disclosure',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('flag_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('flag_version', sa.Integer(), nullable=False),
    sa.Column('recipient_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('shared', sa.Boolean(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('policy_rule', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('policy_version', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('fields', sa.JSON(), nullable=False),
    sa.Column('acknowledge_by', api.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['flag_id'], ['flag.id'], ),
    sa.ForeignKeyConstraint(['recipient_id'], ['agency.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('disclosure', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_disclosure_flag_id'), ['flag_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_disclosure_recipient_id'), ['recipient_id'], unique=False)

    op.create_table('flagversion',
    sa.Column('flag_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('severity', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('summary', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('details', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('occurred_at', api.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('period_start', sa.Date(), nullable=True),
    sa.Column('period_end', sa.Date(), nullable=True),
    sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('article6', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('article9', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.Column('dpa2018', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=True),
    sa.Column('policy_rule', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('policy_version', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('warnings', sa.JSON(), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('created_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['flag_id'], ['flag.id'], ),
    sa.PrimaryKeyConstraint('flag_id', 'version')
    )
    op.create_table('personlink',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('child_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('person_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('relationship', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('agency_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('flag_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('created_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['agency_id'], ['agency.id'], ),
    sa.ForeignKeyConstraint(['child_id'], ['person.id'], ),
    sa.ForeignKeyConstraint(['flag_id'], ['flag.id'], ),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('child_id', 'person_id', 'role', 'flag_id')
    )
    with op.batch_alter_table('personlink', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_personlink_child_id'), ['child_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_personlink_person_id'), ['person_id'], unique=False)

    op.create_table('sharingdecision',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('flag_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('decision', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('recipient_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('decided_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('decided_by_agency', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('decided_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['flag_id'], ['flag.id'], ),
    sa.ForeignKeyConstraint(['recipient_id'], ['agency.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sharingdecision', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sharingdecision_flag_id'), ['flag_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('sharingdecision', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sharingdecision_flag_id'))

    op.drop_table('sharingdecision')
    with op.batch_alter_table('personlink', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_personlink_person_id'))
        batch_op.drop_index(batch_op.f('ix_personlink_child_id'))

    op.drop_table('personlink')
    op.drop_table('flagversion')
    with op.batch_alter_table('disclosure', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_disclosure_recipient_id'))
        batch_op.drop_index(batch_op.f('ix_disclosure_flag_id'))

    op.drop_table('disclosure')
    with op.batch_alter_table('relationship', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_relationship_child_id'))
        batch_op.drop_index(batch_op.f('ix_relationship_agency_id'))

    op.drop_table('relationship')
    with op.batch_alter_table('localidentifier', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_localidentifier_person_id'))

    op.drop_table('localidentifier')
    with op.batch_alter_table('flag', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_flag_publisher_id'))
        batch_op.drop_index(batch_op.f('ix_flag_child_id'))
        batch_op.drop_index(batch_op.f('ix_flag_category'))

    op.drop_table('flag')
    op.drop_table('app_user')
    op.drop_table('signingkey')
    op.drop_table('person')
    op.drop_table('idempotencyrecord')
    with op.batch_alter_table('auditevent', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auditevent_flag_id'))
        batch_op.drop_index(batch_op.f('ix_auditevent_child_id'))
        batch_op.drop_index(batch_op.f('ix_auditevent_action'))

    op.drop_table('auditevent')
    with op.batch_alter_table('agency', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agency_kind'))
        batch_op.drop_index(batch_op.f('ix_agency_area'))

    op.drop_table('agency')
