from datetime import date, datetime

from sqlmodel import Field, Index, SQLModel, UniqueConstraint

from api.db import new_id, timestamp_column


class Transfer(SQLModel, table=True):
    """A child's plan handed from one area's children's social care to another's.

    The outgoing area keeps responsibility until the receiving area picks it up; `pickup_due`
    is when silence becomes an alert.
    """

    __table_args__ = (Index("ix_transfer_sweep", "status", "next_alert_on"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    child_id: str = Field(foreign_key="person.id", index=True)
    from_agency_id: str = Field(foreign_key="agency.id", max_length=64)
    from_area: str = Field(max_length=9, index=True)
    to_area: str = Field(max_length=9, index=True)
    receiving_agency_id: str | None = Field(default=None, foreign_key="agency.id", max_length=64)
    plan: str = Field(max_length=40)
    notified_at: datetime = timestamp_column()
    reason: str | None = Field(default=None, max_length=2000)
    status: str = Field(default="awaiting_pickup", max_length=20)
    pickup_due: date
    # The sweeper alerts on this day (the first working day after pickup_due), then repeats.
    next_alert_on: date | None = None
    alerts_sent: int = 0
    previous_transfer_id: str | None = Field(default=None, foreign_key="transfer.id")
    closed_by_agency_id: str | None = Field(default=None, max_length=64)
    closed_at: datetime | None = timestamp_column(nullable=True)
    close_reason: str | None = Field(default=None, max_length=2000)
    created_at: datetime = timestamp_column()


class SuspectedMove(SQLModel, table=True):
    """A child with a plan in one area seen by an agency in another, with no transfer recorded."""

    __table_args__ = (UniqueConstraint("child_id", "plan_area", "seen_area"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    child_id: str = Field(foreign_key="person.id", index=True)
    plan_flag_id: str = Field(foreign_key="flag.id")
    plan_area: str = Field(max_length=9)
    seen_area: str = Field(max_length=9, index=True)
    seen_by_agency_id: str = Field(foreign_key="agency.id", max_length=64)
    seen_as: str = Field(max_length=60)  # e.g. "relationship:registered_gp", "flag:missing_episode"
    status: str = Field(default="open", max_length=20)  # open, resolved, dismissed
    resolution: str | None = Field(default=None, max_length=2000)
    created_at: datetime = timestamp_column()
