"""audit checkpoints, audit filter indexes, and an append-only audit log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 10:12:05.118204

Triggers make the database itself refuse UPDATE and DELETE (and, on PostgreSQL, TRUNCATE) on
`auditevent` and `auditcheckpoint`. Note for later migrations: an SQLite batch operation that
recreates either table drops its triggers; recreate them afterwards.
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

import api.db


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

APPEND_ONLY = ('auditevent', 'auditcheckpoint')


def upgrade() -> None:
    op.create_table('auditcheckpoint',
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('signature', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('kid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )
    op.create_index(op.f('ix_auditevent_at'), 'auditevent', ['at'], unique=False)
    op.create_index(op.f('ix_auditevent_actor_agency'), 'auditevent', ['actor_agency'],
                    unique=False)
    op.create_index(op.f('ix_auditevent_recipient'), 'auditevent', ['recipient'], unique=False)

    if op.get_bind().dialect.name == 'postgresql':
        op.execute("""
            CREATE FUNCTION flagshare_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END
            $$
        """)
        for table in APPEND_ONLY:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION flagshare_append_only()")
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION flagshare_append_only()")
    else:
        for table in APPEND_ONLY:
            for verb in ('UPDATE', 'DELETE'):
                op.execute(f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                           f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} refused'); "
                           f"END")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
        op.execute("DROP FUNCTION flagshare_append_only()")
    else:
        for table in APPEND_ONLY:
            for verb in ('update', 'delete'):
                op.execute(f"DROP TRIGGER {table}_no_{verb}")
    op.drop_index(op.f('ix_auditevent_recipient'), table_name='auditevent')
    op.drop_index(op.f('ix_auditevent_actor_agency'), table_name='auditevent')
    op.drop_index(op.f('ix_auditevent_at'), table_name='auditevent')
    op.drop_table('auditcheckpoint')
