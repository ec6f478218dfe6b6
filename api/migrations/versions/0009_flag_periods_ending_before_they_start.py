"""flag periods that end before they start

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 11:00:00

Giving a period end to a flag published without a period stored the day the flag was
published as the period's start, unchecked: an end before it made a version whose period ends
before it starts, and every read of the flag or of its child failed on it. Amending now
starts such a period on its end; this repairs the versions already stored the same way.

Only that path wrote them (publishing, and amending a flag that has a start, check the order),
so the start of each is one the publisher never gave: the flag's `created_at`, still held on
the flag. The end is the publisher's own word and is kept; the start becomes the end, the one
day the record vouches for. Clearing the start instead would hide the end from every read,
which shows a period only with its start. Nothing is lost either way but the synthesised day,
so there is nothing to undo.
"""
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain SQL both databases run alike: SQLite keeps dates as ISO text, which sorts as dates.
    op.execute("UPDATE flagversion SET period_start = period_end "
               "WHERE period_end IS NOT NULL AND period_start > period_end")


def downgrade() -> None:
    pass
