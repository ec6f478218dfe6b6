from datetime import date, datetime

from sqlalchemy import JSON, Column, text
from sqlmodel import Field, Index, SQLModel, UniqueConstraint, or_

from api.db import new_id, timestamp_column


class Person(SQLModel, table=True):
    """A child, an unborn child or an adult named on a flag.

    Adults (parents, new partners, alleged perpetrators) are persons in their own right so
    that their history can follow them into other households.
    """

    id: str = Field(default_factory=new_id, primary_key=True)
    nhs_number: str | None = Field(default=None, max_length=10, unique=True)
    given_name: str | None = Field(default=None, max_length=100)
    family_name: str | None = Field(default=None, max_length=100)
    birth_date: date | None = Field(default=None, index=True)  # blocks demographic matching
    sex: str | None = Field(default=None, max_length=10)
    postcode: str | None = Field(default=None, max_length=8)
    ethnicity: str | None = Field(default=None, max_length=2)
    disability: str | None = Field(default=None, max_length=200)
    unborn: bool = False
    # "mother NHS number:expected delivery date" for an unborn child; unique.
    unborn_key: str | None = Field(default=None, max_length=21, unique=True)
    mother_nhs_number: str | None = Field(default=None, max_length=10, index=True)
    expected_delivery_date: date | None = None
    # Set when a MASH practitioner confirmed this record is the same child as another; lookups
    # by NHS number, local id or unborn key then lead to that record. No foreign key, so that
    # SQLite can add the column without rebuilding a table everything else refers to.
    merged_into_id: str | None = Field(default=None, max_length=36)
    created_at: datetime = timestamp_column()
    updated_at: datetime = timestamp_column()

    # Only merged records are indexed. A full index is almost all NULLs, which SQLite's
    # statistics count as one value shared by every row, so after ANALYZE it scanned the
    # whole table to list the records merged into a child (27 ms at 133,000 people).
    __table_args__ = (Index("ix_person_merged_into_id", "merged_into_id",
                            sqlite_where=text("merged_into_id IS NOT NULL"),
                            postgresql_where=text("merged_into_id IS NOT NULL")),)


class LocalIdentifier(SQLModel, table=True):
    """An agency's own id for a person (case id, UPN, police nominal id)."""

    agency_id: str = Field(foreign_key="agency.id", primary_key=True, max_length=64)
    local_id: str = Field(primary_key=True, max_length=64)
    person_id: str = Field(foreign_key="person.id", index=True)


class Relationship(SQLModel, table=True):
    """An agency's statement that it works with a child; decides who receives what."""

    id: str = Field(default_factory=new_id, primary_key=True)
    child_id: str = Field(foreign_key="person.id", index=True)
    agency_id: str = Field(foreign_key="agency.id", index=True, max_length=64)
    kind: str = Field(max_length=40)
    start: date
    end: date | None = None
    created_at: datetime = timestamp_column()

    @classmethod
    def in_force_on(cls, on):
        """SQL: the statement holds on day `on` (a date or a bind parameter)."""
        return (cls.start <= on) & or_(cls.end.is_(None), cls.end >= on)


class PersonLink(SQLModel, table=True):
    """A person connected to a child (parent, sibling, household member...), and who said so."""

    __table_args__ = (UniqueConstraint("child_id", "person_id", "role", "flag_id"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    child_id: str = Field(foreign_key="person.id", index=True)
    person_id: str = Field(foreign_key="person.id", index=True)
    role: str = Field(max_length=40)
    relationship: str | None = Field(default=None, max_length=100)
    agency_id: str = Field(foreign_key="agency.id", max_length=64)
    flag_id: str | None = Field(default=None, foreign_key="flag.id", index=True)
    created_at: datetime = timestamp_column()


class PossibleMatch(SQLModel, table=True):
    """Two person records that may be one child, queued for a MASH practitioner to decide.

    Nothing weaker than an exact NHS number is ever merged automatically. The pair is stored
    with the lower id first, so it is queued once and a rejected pair is not proposed again.
    """

    __table_args__ = (
        UniqueConstraint("person_id", "other_person_id"),
        Index("ix_possiblematch_queue", "status", "area"),
    )

    id: str = Field(default_factory=new_id, primary_key=True)
    person_id: str = Field(foreign_key="person.id", index=True)
    other_person_id: str = Field(foreign_key="person.id", index=True)
    kind: str = Field(max_length=20)  # demographics, unborn_to_born
    score: float
    reasons: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # The area where the record arrived, and the other record's area when that differs:
    # MASH practitioners of either decide.
    area: str = Field(max_length=9)
    other_area: str | None = Field(default=None, max_length=9, index=True)
    proposed_by_agency_id: str = Field(foreign_key="agency.id", max_length=64)
    # open, confirmed, rejected, unmerged; superseded: its two records became one otherwise
    status: str = Field(default="open", max_length=12)
    decided_by: str | None = Field(default=None, max_length=200)
    decided_at: datetime | None = timestamp_column(nullable=True)
    decision_reason: str | None = Field(default=None, max_length=2000)
    created_at: datetime = timestamp_column()


class IdentityMerge(SQLModel, table=True):
    """A confirmed match: what moved from the retired record to the kept one, to undo it exactly."""

    id: str = Field(default_factory=new_id, primary_key=True)
    match_id: str = Field(foreign_key="possiblematch.id", index=True)
    kept_id: str = Field(foreign_key="person.id", index=True)
    merged_id: str = Field(foreign_key="person.id", index=True)
    # table name -> ids (or keys) re-pointed from the retired record to the kept one
    moved: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # blank fields of the kept record filled from the retired one
    filled: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    merged_by: str = Field(max_length=200)
    merged_at: datetime = timestamp_column()
    reason: str = Field(max_length=2000)
    unmerged_by: str | None = Field(default=None, max_length=200)
    unmerged_at: datetime | None = timestamp_column(nullable=True)
    unmerge_reason: str | None = Field(default=None, max_length=2000)
