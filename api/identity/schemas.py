"""How a child or adult is named in a request, validated before anything is stored."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Annotated, Literal

import nhs_number
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

# NHS Data Dictionary ethnic category codes (2001 census based; Z not stated, 99 not known).
ETHNIC_CATEGORIES = (
    "A", "B", "C", "D", "E", "F", "G", "H", "J", "K", "L", "M", "N", "P", "R", "S", "Z", "99",
)
POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$")


def _nhs(value: str) -> str:
    digits = re.sub(r"[\s-]", "", value)
    # [0-9], not \d: other scripts' digits would be stored as a different "number".
    if not re.fullmatch(r"[0-9]{10}", digits):
        raise ValueError("an NHS number is 10 digits")
    if not nhs_number.is_valid(digits):
        raise ValueError("not a valid NHS number: the Modulus 11 check digit does not match")
    return digits


def _postcode(value: str) -> str:
    cleaned = re.sub(r"\s+", "", value.upper())
    if not POSTCODE.match(cleaned):
        raise ValueError("not a UK postcode")
    return f"{cleaned[:-3]} {cleaned[-3:]}"


EARLIEST_BIRTH_DATE = date(1900, 1, 1)


def _birth_date(value: date) -> date:
    if value > date.today():
        raise ValueError("must not be in the future")
    if value < EARLIEST_BIRTH_DATE:
        raise ValueError(f"must not be before {EARLIEST_BIRTH_DATE.isoformat()}")
    return value


# Reach of an expected delivery date: a pregnancy just confirmed, with room for dating error;
# and back to the oldest a person this service is about can be (care leavers, to 25).
EDD_AHEAD = timedelta(weeks=44)
EDD_BEHIND = timedelta(days=25 * 366)


def _expected_delivery(value: date) -> date:
    """A mistyped year (2062, 1926) would make a child nobody could find again: an unborn child
    is keyed by its mother and this date."""
    today = date.today()
    if value > today + EDD_AHEAD:
        raise ValueError(f"must be within {EDD_AHEAD.days // 7} weeks from today")
    if value < today - EDD_BEHIND:
        raise ValueError(f"must not be more than {EDD_BEHIND.days // 366} years ago")
    return value


STARTS_AHEAD = timedelta(days=366)


def _start(value: date) -> date:
    """A plan, order or relationship may be recorded ahead of the day it starts, by up to a
    year; further is a mistyped year, and a relationship that never began would silently
    keep its agency from being sent what it should have."""
    if value > date.today() + STARTS_AHEAD:
        raise ValueError("must not be more than a year from today")
    if value < EARLIEST_BIRTH_DATE:
        raise ValueError(f"must not be before {EARLIEST_BIRTH_DATE.isoformat()}")
    return value


# Length-bounded before the validators run: room for spaces or dashes between the groups.
NhsNumberDigits = Annotated[str, StringConstraints(max_length=20),
                            AfterValidator(_nhs)]  # also for query parameters
NhsNumber = Annotated[NhsNumberDigits, Field(description="10 digits, Modulus 11")]
Postcode = Annotated[str, StringConstraints(max_length=16), AfterValidator(_postcode)]
Name = Annotated[str, Field(min_length=1, max_length=100)]
BirthDate = Annotated[date, AfterValidator(_birth_date)]
ExpectedDeliveryDate = Annotated[date, AfterValidator(_expected_delivery)]
StartDate = Annotated[date, AfterValidator(_start)]


class Subject(BaseModel):
    """A child: NHS number; or local id + family name + birth date; or unborn by mother."""

    # Stripped, so a blank local id or name cannot identify (and so merge) children.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    nhs_number: NhsNumber | None = None
    local_id: str | None = Field(default=None, min_length=1, max_length=64)
    given_name: Name | None = None
    family_name: Name | None = None
    birth_date: BirthDate | None = None
    sex: Literal["male", "female", "other", "unknown"] | None = None
    postcode: Postcode | None = None
    ethnicity: Literal[ETHNIC_CATEGORIES] | None = Field(  # type: ignore[valid-type]
        default=None, description="NHS Data Dictionary ethnic category code")
    disability: str | None = Field(default=None, max_length=200)
    unborn: bool = False
    mother_nhs_number: NhsNumber | None = None
    expected_delivery_date: ExpectedDeliveryDate | None = None

    @model_validator(mode="after")
    def _identifiable(self) -> Subject:
        if self.unborn or (self.mother_nhs_number and self.expected_delivery_date
                           and not self.nhs_number and not self.birth_date):
            if self.nhs_number or self.birth_date:
                raise ValueError("an unborn child has no NHS number or birth date; give "
                                 "mother_nhs_number and expected_delivery_date")
            if not (self.mother_nhs_number and self.expected_delivery_date):
                raise ValueError("an unborn child needs mother_nhs_number and "
                                 "expected_delivery_date")
            self.unborn = True
            return self
        if self.nhs_number:
            return self
        if self.local_id and self.family_name and self.birth_date:
            return self
        raise ValueError("identify the child by nhs_number, or by local_id with family_name and "
                         "birth_date, or (unborn) by mother_nhs_number and expected_delivery_date")

    @property
    def unborn_key(self) -> str | None:
        if not self.unborn:
            return None
        return f"{self.mother_nhs_number}:{self.expected_delivery_date.isoformat()}"


class RelatedPerson(BaseModel):
    """An adult or sibling connected to the child, stored as a person in their own right."""

    # Stripped, so a blank name does not count as naming a person.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    role: Literal["household_member", "parent", "sibling", "alleged_perpetrator"]
    nhs_number: NhsNumber | None = None
    given_name: Name | None = None
    family_name: Name | None = None
    birth_date: BirthDate | None = None
    relationship: str | None = Field(default=None, max_length=100,
                                     description="e.g. mother, father, mother's new partner")

    @model_validator(mode="after")
    def _named(self) -> RelatedPerson:
        if not (self.nhs_number or self.family_name or self.given_name):
            raise ValueError("a related person needs an nhs_number or a name")
        return self


class RelationshipCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: Subject
    kind: Literal["registered_gp", "school", "health_visitor", "allocated_social_worker",
                  "midwife", "other"]
    start: StartDate
    end: date | None = None

    @field_validator("end")
    @classmethod
    def _ordered(cls, end: date | None, info: ValidationInfo) -> date | None:
        """A field validator, so the 422 names `end` rather than the whole body."""
        start = info.data.get("start")
        if end is not None and start is not None and end < start:
            raise ValueError("end must not be before start")
        return end


class RelationshipOut(BaseModel):
    id: str
    child_id: str
    agency: str
    kind: str
    start: date
    end: date | None


class MatchDecision(BaseModel):
    """Why the practitioner decided as they did; kept with the decision and in the audit log."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: str = Field(min_length=1, max_length=2000)


class MatchReason(BaseModel):
    field: str
    match: str = Field(description="e.g. exact, nickname, sounds_alike, spelling, "
                       "day_month_transposed, one_digit, same_district, different")


class PersonSummary(BaseModel):
    """Enough to tell records of children apart; the record itself is read with a purpose."""

    child_id: str
    nhs_number: str | None
    given_name: str | None
    family_name: str | None
    birth_date: date | None
    sex: str | None
    postcode: str | None
    unborn: bool
    mother_nhs_number: str | None
    expected_delivery_date: date | None


class MatchRecord(PersonSummary):
    merged_into: str | None
    known_to: list[str] = Field(description="Agencies holding a local id or relationship")


class MergeOut(BaseModel):
    id: str
    kept_id: str
    merged_id: str
    merged_by: str
    merged_at: datetime
    reason: str
    moved: dict[str, int] = Field(description="How many rows of each kind followed the merge")
    unmerged_by: str | None
    unmerged_at: datetime | None
    unmerge_reason: str | None


class MatchOut(BaseModel):
    id: str
    kind: Literal["demographics", "unborn_to_born"]
    status: Literal["open", "confirmed", "rejected", "unmerged", "superseded"]
    score: float
    reasons: list[MatchReason]
    area: str
    other_area: str | None
    proposed_by: str
    records: list[MatchRecord]
    merge: MergeOut | None
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    created_at: datetime
