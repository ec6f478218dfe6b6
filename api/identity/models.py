from datetime import date, datetime

from sqlmodel import Field, SQLModel, UniqueConstraint

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
    birth_date: date | None = None
    sex: str | None = Field(default=None, max_length=10)
    postcode: str | None = Field(default=None, max_length=8)
    ethnicity: str | None = Field(default=None, max_length=2)
    disability: str | None = Field(default=None, max_length=200)
    unborn: bool = False
    # "mother NHS number:expected delivery date" for an unborn child; unique.
    unborn_key: str | None = Field(default=None, max_length=21, unique=True)
    mother_nhs_number: str | None = Field(default=None, max_length=10)
    expected_delivery_date: date | None = None
    created_at: datetime = timestamp_column()
    updated_at: datetime = timestamp_column()


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


class PersonLink(SQLModel, table=True):
    """A person connected to a child (parent, sibling, household member...), and who said so."""

    __table_args__ = (UniqueConstraint("child_id", "person_id", "role", "flag_id"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    child_id: str = Field(foreign_key="person.id", index=True)
    person_id: str = Field(foreign_key="person.id", index=True)
    role: str = Field(max_length=40)
    relationship: str | None = Field(default=None, max_length=100)
    agency_id: str = Field(foreign_key="agency.id", max_length=64)
    flag_id: str | None = Field(default=None, foreign_key="flag.id")
    created_at: datetime = timestamp_column()
