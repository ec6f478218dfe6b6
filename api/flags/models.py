from datetime import date, datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from api.db import new_id, timestamp_column


class Flag(SQLModel, table=True):
    """A safeguarding flag about one child; its content lives in versions."""

    id: str = Field(default_factory=new_id, primary_key=True)
    child_id: str = Field(foreign_key="person.id", index=True)
    publisher_id: str = Field(foreign_key="agency.id", index=True, max_length=64)
    category: str = Field(max_length=64, index=True)
    version: int = 1
    status: str = Field(default="active", max_length=20)
    # What the publisher's own record held when it flagged the child, for the data-quality
    # report (reviews keep finding NHS numbers and ethnicity missing). Null before 0006.
    subject_nhs_number_given: bool | None = None
    subject_ethnicity_given: bool | None = None
    created_at: datetime = timestamp_column()
    updated_at: datetime = timestamp_column()


class FlagVersion(SQLModel, table=True):
    """Every version of a flag is kept: what was said, when, and under which rule."""

    flag_id: str = Field(foreign_key="flag.id", primary_key=True)
    version: int = Field(primary_key=True)
    status: str = Field(max_length=20)
    severity: str = Field(max_length=10)
    summary: str
    details: str | None = None
    occurred_at: datetime | None = timestamp_column(nullable=True)
    period_start: date | None = None
    period_end: date | None = None
    purpose: str = Field(max_length=40)
    article6: str = Field(max_length=20)
    article9: str | None = Field(default=None, max_length=20)
    dpa2018: str | None = Field(default=None, max_length=60)
    policy_rule: str = Field(max_length=40)
    policy_version: str = Field(max_length=64)
    warnings: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_by: str = Field(max_length=200)
    created_at: datetime = timestamp_column()


class Disclosure(SQLModel, table=True):
    """The decision, per recipient and flag version, to share or not, with the rule behind it.

    Written in the same transaction as the flag version; forwarding delivers the shared ones.
    """

    id: str = Field(default_factory=new_id, primary_key=True)
    flag_id: str = Field(foreign_key="flag.id", index=True)
    flag_version: int
    recipient_id: str = Field(foreign_key="agency.id", index=True, max_length=64)
    shared: bool
    reason: str
    policy_rule: str | None = Field(default=None, max_length=40)
    policy_version: str = Field(max_length=64)
    fields: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    acknowledge_by: datetime | None = timestamp_column(nullable=True)
    created_at: datetime = timestamp_column()


class SharingDecision(SQLModel, table=True):
    """A practitioner's recorded decision to share a flag further, or not to share it."""

    id: str = Field(default_factory=new_id, primary_key=True)
    flag_id: str = Field(foreign_key="flag.id", index=True)
    decision: str = Field(max_length=10)
    recipient_id: str | None = Field(default=None, foreign_key="agency.id", max_length=64)
    reason: str
    decided_by: str = Field(max_length=200)
    decided_by_agency: str | None = Field(default=None, max_length=64)
    decided_at: datetime = timestamp_column()
