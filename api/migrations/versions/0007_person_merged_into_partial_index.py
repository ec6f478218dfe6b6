"""index only merged person records

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 07:00:00

The index on `person.merged_into_id` held every person, nearly all with NULL there. SQLite's
statistics count those NULLs as one value shared by every row, so once ANALYZE had run the
planner judged the index useless and scanned the table to list the records merged into a
child, on every child view. A partial index holds only merged records; both databases use it
for `merged_into_id = ?`.
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

MERGED = sa.text("merged_into_id IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.drop_index('ix_person_merged_into_id')
        batch_op.create_index('ix_person_merged_into_id', ['merged_into_id'], unique=False,
                              sqlite_where=MERGED, postgresql_where=MERGED)


def downgrade() -> None:
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.drop_index('ix_person_merged_into_id')
        batch_op.create_index('ix_person_merged_into_id', ['merged_into_id'], unique=False)
